"""Progress bars: tqdm, off when stderr is not a terminal or when ``--quiet`` is given."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def progress(iterable: Any = None, **kwargs: Any) -> tqdm:
    """A tqdm bar that honours ``--quiet`` and hides itself when not on a TTY."""
    kwargs.setdefault("disable", True if _quiet else None)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
