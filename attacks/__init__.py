"""Attacks that reconstruct training data and labels from what a federated server sees."""

from __future__ import annotations

from gradleak.attacks.base import Attack
from gradleak.registry import Registry
from gradleak.spec import make_config, parse_spec

ATTACKS: Registry[type[Attack]] = Registry("attack")

__all__ = ["ATTACKS", "Attack", "build_attack", "register"]


def register(cls: type[Attack]) -> type[Attack]:
    """Class decorator: add an attack to the registry under its ``name``."""
    return ATTACKS.register(cls.name)(cls)


def build_attack(spec: str, **overrides) -> Attack:
    """Build an attack from ``name`` or ``name:key=value,...``; ``overrides`` win over the spec."""
    parsed = parse_spec(spec)
    cls = ATTACKS.get(parsed.name)
    return cls(make_config(cls.Config, {**parsed.params, **overrides}, f"attack {parsed.name!r}"))

# Importing the attack modules registers them.
from gradleak.attacks import analytic, dlg, fedavg, gradinversion, idlg, inverting, rgap  # noqa: E402,F401
from gradleak.attacks import differencing  # noqa: E402,F401  (after idlg: it builds its inner attack)
