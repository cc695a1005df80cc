"""One history across environment renames.

asv names an environment after its tool, Python version and requirements, so adding a
dependency to the matrix, or dropping one, starts a new name, while asv's own graphs
keep one line per benchmark and Python version. Split at every rename, a long history
becomes pieces too short to judge, and the steps between pieces show nowhere. The
line an environment belongs to is its name with the unpinned requirements taken out:
what stays is the tool, the Python version, every pinned version and the environment
variables. A changed pin or Python is another line (the code under test ran on other
software); a requirement added or removed without a version is the same line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from asv import util


def line_of(env_name: str, requirements: Mapping[str, object]) -> str:
    """The environment line of ``env_name``: its unpinned requirements left out.

    ``requirements`` are those asv stored with the results (name -> version, empty or
    None when unpinned). Each unpinned name is taken out where it stands as a whole
    dash-separated part of the name, as asv writes it.
    """
    line = env_name
    for name, version in sorted(requirements.items()):
        if version:
            continue
        part = util.sanitize_filename(str(name))
        line = re.sub(rf"-{re.escape(part)}(?=-|$)", "", line, count=1)
    return line
