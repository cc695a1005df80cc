"""Results files in asv's older formats, migrated in memory by asv's own code.

asv 0.4 wrote results in format version 1; asv 0.5 and later read only version 2 and
ask for ``asv update``, which rewrites every file in place. Public histories still hold
whole folders of version 1 files, and rewriting another project's results is not ours
to do. asv keeps its migration steps (``Results.update_to_<n>``) as functions of the
parsed document, so the document is read, stepped up to the version this asv reads,
and served to the reader through the few questions it asks of a ``Results``; the file
is only ever opened for reading.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from asv import results as asv_results
from asv import util


class OldFormatError(ValueError):
    """A file in an old format that asv's migration could not bring up to date."""


class MigratedResults:
    """A version-2 results document as the reader uses a ``Results``: the run's commit,
    date and environment, and per benchmark its values and samples by parameters."""

    def __init__(self, document: dict) -> None:
        self.commit_hash = document["commit_hash"]
        self.date = document["date"]
        self.python = str(document["python"])
        self.env_name = document["env_name"]
        self.params = dict(document["params"])
        self.requirements = dict(document.get("requirements") or {})
        columns = list(document["result_columns"])
        self._rows = {
            name: dict(zip(columns, row, strict=False)) for name, row in document["results"].items()
        }
        self.benchmark_version = {name: row.get("version") for name, row in self._rows.items()}

    def get_all_result_keys(self) -> Iterable[str]:
        return self._rows.keys()

    def get_result_params(self, key: str) -> list[list[str]]:
        return self._rows[key].get("params") or []

    def get_result_value(self, key: str, params: list[list[str]]) -> list[float | None]:
        row = self._rows[key]
        return asv_results._compatible_results(row.get("result"), row.get("params") or [], params)

    def get_result_samples(self, key: str, params: list[list[str]]) -> list[object]:
        row = self._rows[key]
        return asv_results._compatible_results(row.get("samples"), row.get("params") or [], params)


def migrate(path: Path) -> MigratedResults:
    """Read an old-format results file and bring it up to asv's current format.

    Raises :class:`OldFormatError` when the file is not an old results file asv can
    migrate (its steps raise on documents they do not understand).
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OldFormatError(f"cannot read {path.name}: {exc}") from None
    target = asv_results.Results.api_version
    version = document.get("version") if isinstance(document, dict) else None
    if not isinstance(version, int) or not 1 <= version < target:
        raise OldFormatError(f"{path.name} is not in an older asv results format")
    try:
        for step in range(version + 1, target + 1):
            document = getattr(asv_results.Results, f"update_to_{step}")(document)
        return MigratedResults(document)
    except (util.UserError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise OldFormatError(
            f"asv cannot migrate {path.name} from format {version}: {type(exc).__name__}: {exc}"
        ) from None
