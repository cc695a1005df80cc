"""The asv machine name results are filed under, registered before asv needs it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from loadkit.common.errors import Failure

MACHINE_FILE = Path("~/.asv-machine.json")


def default_machine() -> str:
    """The name asv files a run under when given none: this host's."""
    from asv.machine import Machine  # asv's own rule, so the two never disagree

    return str(Machine.get_unique_machine_name())


def known_machines() -> dict:
    """The machines ``~/.asv-machine.json`` describes (none when it is missing or
    unreadable: asv then writes it afresh)."""
    try:
        known = json.loads(MACHINE_FILE.expanduser().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in known.items() if k != "version"} if isinstance(known, dict) else {}


def ensure_machine(machine: str | None, run_asv: Callable[..., int]) -> None:
    """asv files results under a machine name it must know: add it once, with asv's
    own defaults for this host. Without a name, this host's: asv accepts it unknown
    only while the file holds exactly one machine, so a second one (a comparison's
    own) would otherwise make every later plain ``asv run`` fail."""
    name = machine or default_machine()
    known = known_machines()
    if name in known or (machine is None and len(known) == 1):
        return
    if run_asv("machine", "--yes", "--machine", name) != 0:
        raise Failure(f"`asv machine --machine {name}` failed (see its output above)")
