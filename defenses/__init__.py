"""Defenses against gradient leakage, composable as specs: ``prune:ratio=0.9``, ``dp-sgd:epsilon=3``.

Each defense declares the stage of a round where it acts (see :mod:`gradleak.defenses.base`);
:func:`build_stack` parses specs into a :class:`DefenseStack` ordered by stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from gradleak.defenses.base import STAGE_ORDER, Aggregation, ClientContext, Defense, Stage, Update
from gradleak.defenses.plain import PlainAggregation, weighted_mean
from gradleak.errors import GradleakError
from gradleak.registry import Registry
from gradleak.spec import make_config, parse_spec

DEFENSES: Registry[type[Defense]] = Registry("defense")

__all__ = [
    "DEFENSES", "Aggregation", "ClientContext", "Defense", "DefenseStack", "PlainAggregation",
    "Stage", "Update", "build_defense", "build_stack", "register", "weighted_mean",
]


def register(cls: type[Defense]) -> type[Defense]:
    """Class decorator: add a defense to the registry under its ``name``."""
    return DEFENSES.register(cls.name)(cls)


def build_defense(spec: str) -> Defense:
    parsed = parse_spec(spec)
    cls = DEFENSES.get(parsed.name)
    return cls(make_config(cls.Config, parsed.params, f"defense {parsed.name!r}"))


@dataclass(frozen=True)
class DefenseStack:
    """Defenses in the order a round applies them; at most one per ``step``/``aggregation`` stage."""

    defenses: tuple[Defense, ...] = ()

    def __post_init__(self) -> None:
        for stage in ("step", "aggregation"):
            names = [d.name for d in self.defenses if stage in d.stages]
            if len(names) > 1:
                raise GradleakError(f"defenses {', '.join(names)} all act at the {stage} stage; keep one")

    def at(self, stage: Stage) -> list[Defense]:
        return [d for d in self.defenses if stage in d.stages]

    @property
    def aggregator(self) -> Defense:
        return next(iter(self.at("aggregation")), PlainAggregation())

    def names(self) -> tuple[str, ...]:
        return tuple(d.describe() for d in self.defenses)

    def __iter__(self) -> Iterator[Defense]:
        return iter(self.defenses)


def build_stack(specs: Iterable[str]) -> DefenseStack:
    """Parse defense specs (``none`` means no defense) into a stack ordered by stage."""
    defenses = [build_defense(s) for s in specs if parse_spec(s).name != "none"]
    defenses.sort(key=lambda d: STAGE_ORDER.index(d.stage))
    return DefenseStack(tuple(defenses))


# Importing a mechanism registers it.
from gradleak.defenses import dp_distributed, dp_fedavg, dp_sgd, pruning, quantization, soteria, vet  # noqa: E402,F401
from gradleak.defenses.secagg import aggregator as _secagg  # noqa: E402,F401  (registers "secagg")
