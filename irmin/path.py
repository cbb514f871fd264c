"""Paths: tuples of step names, parsed once at the API boundary.

A path is ``"a/b/c"`` or a sequence of steps. Steps are what a git tree
entry may be named and what ``git fsck --strict`` accepts: not empty, no
``/`` or NUL, not ``.``, ``..`` or ``.git``. The empty path is the root.
"""

from __future__ import annotations

from collections.abc import Sequence
from sys import intern

from .errors import InvalidPath

Path = tuple[str, ...]
PathLike = str | Sequence[str]

_BAD_STEPS = frozenset(("", ".", "..", ".git"))


def check_step(step: str) -> str:
    if step in _BAD_STEPS or "/" in step or "\0" in step or step.lower() == ".git":
        raise InvalidPath(f"invalid path step {step!r}")
    return step


_cache: dict[str, Path] = {}
#: Tuples already validated (a path parsed once is handed around as a tuple).
_checked: set[Path] = set()


def parse(path: PathLike) -> Path:
    """A validated tuple of steps; ``""`` and ``"/"`` are the root."""
    if isinstance(path, str):
        hit = _cache.get(path)
        if hit is not None:
            return hit
        text = path.strip("/")
        steps: Path = tuple(map(intern, text.split("/"))) if text else ()
        for s in steps:
            check_step(s)
        if len(_cache) < 65536:
            _cache[path] = steps
            _checked.add(steps)
        return steps
    if type(path) is tuple and path in _checked:
        return path
    if isinstance(path, (bytes, bytearray)):
        raise InvalidPath("paths are str or sequences of str, not bytes")
    steps = tuple(path)
    for s in steps:
        if type(s) is not str:
            raise InvalidPath(f"path step {s!r} is not a str")
        check_step(s)
    if len(_checked) < 65536:
        _checked.add(steps)
    return steps


def show(path: Path) -> str:
    return "/".join(path)
