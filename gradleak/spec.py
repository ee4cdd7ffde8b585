"""Specs (``name:key=value,key=value``) and config dataclasses filled from them.

The same path fills a config from a CLI spec (string values) and from a TOML table
(typed values): :func:`make_config` converts each value to the field's declared type and
rejects unknown keys, naming the valid ones.

A numeric field declares its valid values as ``Annotated[int, Range(1, 10**6)]``; the
conversion checks them, and refuses NaN and infinity for every float unless its
:class:`Range` allows them. The CLI's numeric options use the same check
(:func:`gradleak.commands.options.typed`), so a bad number fails where it is parsed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Mapping, TypeVar

from gradleak.errors import GradleakError

C = TypeVar("C")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# Seeds feed torch.manual_seed and numpy's SeedSequence: non-negative, below 2^63.
SEED_LIMIT = 2**63 - 1
# Clients in a cohort or population: every one is simulated in this process.
MAX_CLIENTS = 100_000
# Worker processes of a sweep.
MAX_WORKERS = 256


@dataclass(frozen=True)
class Range:
    """The valid values of a number: ``low <= v <= high`` (strict where ``*_open``), finite unless ``finite=False``.

    ``None`` leaves that side open. A config field declares it as ``Annotated[float, Range(0, 1)]``;
    a limit on the high side keeps a typo like ``iterations=1e12`` from running for days or
    exhausting memory.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded
    high_open: bool = False  # high itself is excluded
    finite: bool = True  # NaN and +-inf are refused

    def contains(self, value: float) -> bool:
        if math.isnan(value) or math.isinf(value):
            return not self.finite
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or value < self.high or (value == self.high and not self.high_open)

    def describe(self, kind: type = float) -> str:
        """E.g. ``"a whole number between 1 and 100,000"`` or ``"a finite number in (0, 1]"``."""
        if kind is int:
            low = None if self.low is None else math.floor(self.low) + 1 if self.low_open else math.ceil(self.low)
            high = None if self.high is None else math.ceil(self.high) - 1 if self.high_open else math.floor(self.high)
            if high is None:
                return f"a whole number of at least {low:,}"
            return f"a whole number between {low:,} and {high:,}" if low is not None else f"a whole number up to {high:,}"
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'a finite' if self.finite else 'a'} number in {left}{low}, {high}{right}"


Seed = Annotated[int, Range(0, SEED_LIMIT)]


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
    Values outside a field's :class:`Range` (and NaN or infinity in a float) are refused here.
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls, include_extras=True)
    unknown = sorted(set(params) - set(fields))
    if unknown:
        valid = ", ".join(sorted(fields)) or "(none)"
        raise GradleakError(f"unknown key(s) {', '.join(unknown)} for {where}; valid keys: {valid}")
    values = {key: convert(value, hints[key], key, where) for key, value in params.items()}
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


def convert(value: Any, hint: Any, key: str | None = None, where: str | None = None, bounds: Range | None = None) -> Any:
    """``value`` (a string from a spec or flag, or a typed TOML value) as type ``hint``, range-checked.

    ``key`` and ``where`` name the value in error messages; without them the message names only
    the value (the CLI puts the option's name in front).
    """
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *metadata = typing.get_args(hint)
        declared = [m for m in metadata if isinstance(m, Range)]
        return convert(value, base, key, where, declared[0] if declared else bounds)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null"}):
            return None
        errors = []
        for option in options:
            try:
                return convert(value, option, key, where, bounds)
            except GradleakError as exc:
                errors.append(str(exc))
        raise GradleakError(errors[0])
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise GradleakError(f"{_named(value, key, where)}; choose one of: {', '.join(map(str, choices))}")
        return value
    if origin in (tuple, list):
        (item_hint, *_) = typing.get_args(hint) or (str,)
        items = value.split("/") if isinstance(value, str) else list(value)
        converted = [convert(item, item_hint, key, where, bounds) for item in items]
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
            number = int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
            return _checked(number, value, int, bounds, key, where)
        if hint is float:
            return _checked(float(value), value, float, bounds or Range(), key, where)
        if hint is str:
            return str(value)
    except (TypeError, ValueError, OverflowError):
        raise GradleakError(f"{_named(value, key, where)} is not a valid {getattr(hint, '__name__', hint)}") from None
    return value


def _checked(number: float, given: Any, kind: type, bounds: Range | None, key: str | None, where: str | None) -> Any:
    if bounds is not None and not bounds.contains(number):
        raise GradleakError(f"{_named(given, key, where)} is out of range; give {bounds.describe(kind)}")
    return number


def _named(value: Any, key: str | None, where: str | None) -> str:
    if key is None:
        return repr(value)
    return f"{key}={value!r} for {where}" if where else f"{key}={value!r}"
