"""Where the k6 load profiles live, and which file a profile name means.

A profile is a k6 script whose ``handleSummary`` writes ``profiles/contest.js``'s JSON summary
shape. ``rinha profile run NAME`` takes a name (``contest``, ``spike``, ...: ``NAME.js`` in the
profiles directory) or a path to a ``.js`` file. The directory is, first found: ``$RINHA_PROFILES``,
``./profiles`` (a checkout's working directory), the ``profiles/`` of the source tree this package
was imported from (an editable install), and the copy installed with the package (a wheel).
"""

from __future__ import annotations

import os
from pathlib import Path

import rinha


class UnknownProfile(Exception):
    """No such profile; the message lists the known ones, in one line."""


def profile_dirs() -> list[Path]:
    """Candidate profile directories, in order of preference (existing ones only)."""
    candidates = []
    if os.environ.get("RINHA_PROFILES"):
        candidates.append(Path(os.environ["RINHA_PROFILES"]))
    package = Path(rinha.__file__).resolve().parent
    candidates += [Path.cwd() / "profiles", package.parent / "profiles", package / "profiles"]
    seen, found = set(), []
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved not in seen and (resolved / "contest.js").is_file():
            seen.add(resolved)
            found.append(resolved)
    return found


def available() -> dict[str, Path]:
    """Every profile by name (a ``*.js`` at the top of the first profile directory)."""
    dirs = profile_dirs()
    if not dirs:
        return {}
    return {path.stem: path for path in sorted(dirs[0].glob("*.js"))}


def resolve(name_or_path: str) -> tuple[str, Path]:
    """(profile name, script path) for a name or a path; :class:`UnknownProfile` otherwise."""
    if name_or_path.endswith(".js") or os.sep in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise UnknownProfile(f"no profile script at {name_or_path}")
        return path.stem, path.resolve()
    known = available()
    if name_or_path in known:
        return name_or_path, known[name_or_path]
    if not known:
        raise UnknownProfile(f"unknown profile {name_or_path!r}: no profiles directory found "
                             "(set RINHA_PROFILES or run from the rinha checkout)")
    raise UnknownProfile(f"unknown profile {name_or_path!r} (known: {', '.join(known)}; or give a path to a .js file)")
