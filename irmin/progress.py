"""Progress bars for the maintenance tools (fsck, gc, copy), on stderr.

``progress=None`` (the default everywhere) shows a bar only when stderr is a
terminal; ``True``/``False`` force it on or off. The bar is tqdm's; when it is
off a no-op stand-in with the same three methods is returned, so callers
never test for it.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["bar"]


class _Quiet:
    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        pass

    def reset(self, total: int | None = None) -> None:
        self.n = 0

    def close(self) -> None:
        pass

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def bar(progress: bool | None, desc: str, total: int | None = None, unit: str = "obj") -> Any:
    """A tqdm bar on stderr, or a silent stand-in."""
    show = sys.stderr.isatty() if progress is None else progress
    if not show:
        return _Quiet()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, unit_scale=True,
                dynamic_ncols=True, leave=False)
