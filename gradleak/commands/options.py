"""What the commands' options accept: numbers in a declared range, folders that can be written, inputs that exist.

Each check is an argparse ``type=``, so a bad value fails while the command line is parsed,
before any work starts, and :class:`OneLineParser` reports it on one line naming the option,
with exit status 2. Numbers go through :func:`gradleak.spec.convert`, the same conversion
and :class:`~gradleak.spec.Range` check that spec values get.
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, NoReturn

from gradleak.errors import GradleakError
from gradleak.spec import Range, Seed, convert


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), like every other gradleak error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def typed(hint: Any) -> Callable[[str], Any]:
    """An argparse ``type`` that converts a flag's text like a spec value of type ``hint``, range included."""

    def parse(text: str) -> Any:
        try:
            return convert(text, hint)
        except GradleakError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.hint = hint  # type: ignore[attr-defined]  # read by the tests that probe every numeric option
    return parse


def field_type(cls: type, name: str) -> Callable[[str], Any]:
    """The argparse ``type`` of a flag that fills field ``name`` of dataclass ``cls``: the field's type and range.

    A flag left out is the field's default, so ``None`` is not a value to type; a tuple field
    is typed per item (the flag takes ``nargs``).
    """
    return typed(_flag_hint(typing.get_type_hints(cls, include_extras=True)[name]))


def _flag_hint(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *metadata = typing.get_args(hint)
        return Annotated[(_flag_hint(base), *metadata)]
    if origin in (typing.Union, types.UnionType):
        options = tuple(a for a in typing.get_args(hint) if a is not type(None))
        return _flag_hint(options[0]) if len(options) == 1 else typing.Union[options]
    if origin is tuple:
        return _flag_hint(typing.get_args(hint)[0])
    return hint


def number(kind: type, low: float | None = None, high: float | None = None, **open_ends: bool) -> Callable[[str], Any]:
    """``typed(Annotated[kind, Range(low, high, ...)])``: a flag's number in ``[low, high]``."""
    return typed(Annotated[kind, Range(low, high, **open_ends)])


SEED = typed(Seed)


def out_dir(text: str) -> str:
    """A folder that exists and is writable, or can be created (its nearest existing parent is)."""
    _check_writable(Path(text).expanduser(), folder=True)
    return text


def out_file(text: str) -> str:
    """A file that can be written: a writable file, or a new one in a folder that is or can be made."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    _check_writable(path, folder=False)
    return text


def in_file(text: str) -> str:
    """An existing, readable file."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no file {text}" + (" (it is a folder)" if path.is_dir() else ""))
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text} is not readable")
    return text


def in_dir(text: str) -> str:
    """An existing folder."""
    if not Path(text).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"no folder {text}")
    return text


def _check_writable(path: Path, folder: bool) -> None:
    if path.exists():
        if folder and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{path} is a file, not a folder; give a folder to write into")
        if not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"{path} is not writable; give another path")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot create {path}: {parent} is not writable; give another path")

