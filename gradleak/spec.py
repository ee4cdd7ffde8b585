"""Specs (``name:key=value,key=value``) and config dataclasses filled from them.

The same path fills a config from a CLI spec (string values) and from a TOML table
(typed values): :func:`make_config` converts each value to the field's declared type and
rejects unknown keys, naming the valid ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

from gradleak.errors import GradleakError

C = TypeVar("C")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Spec:
    """A parsed ``name:key=value,...`` string; values stay strings until a config types them."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.params.items())


def parse_spec(text: str) -> Spec:
    """Parse ``"dp-sgd:epsilon=3,clip=1"`` into ``Spec("dp-sgd", {"epsilon": "3", "clip": "1"})``."""
    name, _, rest = text.strip().partition(":")
    if not name:
        raise GradleakError(f"empty name in spec {text!r}; write NAME or NAME:key=value,...")
    params: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise GradleakError(f"bad entry {item!r} in spec {text!r}; write key=value")
        key = key.strip().replace("-", "_")
        if key in params:
            raise GradleakError(f"key {key!r} given twice in spec {text!r}")
        params[key] = value.strip()
    return Spec(name.strip(), params)


def make_config(cls: type[C], params: Mapping[str, Any], where: str) -> C:
    """Build dataclass ``cls`` from ``params``, converting values to the declared field types.

    ``where`` names the thing being configured in error messages (e.g. ``"defense 'prune'"``).
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(params) - set(fields))
    if unknown:
        valid = ", ".join(sorted(fields)) or "(none)"
        raise GradleakError(f"unknown key(s) {', '.join(unknown)} for {where}; valid keys: {valid}")
    values = {key: _convert(value, hints[key], key, where) for key, value in params.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise GradleakError(f"invalid settings for {where}: {exc}") from None


def config_fields(cls: type) -> dict[str, Any]:
    """The keys a config accepts with their defaults (for help texts and error messages)."""
    return {
        f.name: (f.default if f.default is not dataclasses.MISSING else None)
        for f in dataclasses.fields(cls)
        if f.init
    }


def _convert(value: Any, hint: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null"}):
            return None
        errors = []
        for option in options:
            try:
                return _convert(value, option, key, where)
            except GradleakError as exc:
                errors.append(str(exc))
        raise GradleakError(errors[0])
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise GradleakError(
                f"{key}={value!r} for {where}; choose one of: {', '.join(map(str, choices))}"
            )
        return value
    if origin in (tuple, list):
        (item_hint, *_) = typing.get_args(hint) or (str,)
        items = value.split("/") if isinstance(value, str) else list(value)
        converted = [_convert(item, item_hint, key, where) for item in items]
        return tuple(converted) if origin is tuple else converted
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
    except (TypeError, ValueError):
        raise GradleakError(
            f"{key}={value!r} for {where} is not a valid {getattr(hint, '__name__', hint)}"
        ) from None
    return value
