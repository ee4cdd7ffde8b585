"""Name -> object registries (attacks, defenses, models, datasets, CLI commands)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from gradleak.errors import GradleakError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping filled by the ``@registry.register("name")`` decorator.

    Looking up an unknown name raises :class:`GradleakError` listing the valid names,
    so every registry gives the same helpful message.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise GradleakError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def discover(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` and its subpackages, so each one registers what it defines.

    A package's ``__init__`` calls this last: a new attack, defense or server file is found by
    being there, with no import line to add.
    """
    for module in pkgutil.walk_packages(path, prefix=f"{package}."):
        if not module.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(module.name)
