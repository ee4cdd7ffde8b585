"""Result records: the typed form of one line of ``results.jsonl``, one class per ``kind``.

Producers write plain JSON (:class:`~gradleak.eval.store.ResultStore`); readers (the summary,
the report) get these records back from :func:`load_records`. ``from_dict`` reads any file
written so far: a key an older version did not write takes its default, and ``to_dict``
leaves it out again, so ``from_dict(d).to_dict() == d`` and a record's ``key`` (which resume
depends on) never changes. Keys a record class does not name are kept in ``extra``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, TypeVar, Union

from gradleak.eval.store import read_records

R = TypeVar("R", bound="Record")


@dataclass(frozen=True)
class Record:
    """What every record has: the ``key`` it is resumed by, and the version and time that wrote it."""

    kind: ClassVar[str] = ""
    key: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)  # what the key is computed from
    label: Mapping[str, Any] = field(default_factory=dict)  # the names the report groups by
    seed: int = 0
    gradleak: str = ""
    finished: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this version does not name, kept as read
    absent: frozenset[str] = field(default=frozenset(), repr=False, compare=False)  # fields the source lacked

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "absent"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and not (cls.kind and k == "kind")}
        return cls(**known, extra=extra, absent=frozenset(names - known.keys()))

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data, with exactly the keys it was read with."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("extra", "absent") and f.name not in self.absent}
        return {"kind": self.kind, **data, **self.extra} if self.kind else {**data, **self.extra}


@dataclass(frozen=True)
class AttackRecord(Record):
    """One attack on one defended round (``gradleak evaluate``, the demo); ``stopped`` when a
    defense stopped the round before the server saw an update (then there is no ``view``)."""

    kind: ClassVar[str] = "attack"
    position: int = 0  # in the grid, so tables keep the grid's order, not the finishing order
    epsilon: float | None = None
    dp: list[Mapping[str, Any]] = field(default_factory=list)
    noise_seeded: bool = False
    metrics: Mapping[str, Any] = field(default_factory=dict)  # per_image scores and success_rate
    view: Mapping[str, Any] | None = None
    cost: Mapping[str, Any] = field(default_factory=dict)
    attack_info: Mapping[str, Any] = field(default_factory=dict)
    images: Mapping[str, list[str]] = field(default_factory=dict)  # truth / reconstruction PNG paths
    device: str = ""
    stopped: str | None = None  # why the round stopped

    @property
    def scenario(self) -> str:
        return self.label["scenario"]

    @property
    def attack(self) -> str:
        return self.label["attack"]

    @property
    def defense(self) -> str:
        return self.label["defense"]

    @property
    def per_image(self) -> list[Mapping[str, Any]]:
        return list(self.metrics.get("per_image", []))

    @property
    def batch_size(self) -> int:
        return int(self.config.get("scenario", {}).get("batch_size", 1))

    @property
    def refused(self) -> Mapping[str, str]:
        """Clients that refused the model, with why (none in records older than refusals)."""
        return (self.view or {}).get("refused", {})


@dataclass(frozen=True)
class UtilityRecord(Record):
    """The test accuracy FedAvg reaches under a defense (``gradleak utility``)."""

    kind: ClassVar[str] = "utility"
    accuracy: float = float("nan")
    history: list[Mapping[str, Any]] = field(default_factory=list)  # accuracy per evaluated round
    epsilon: float | None = None
    delta: float | None = None
    noise_multiplier: float | None = None
    noise_seeded: bool = False
    seconds: float = 0.0
    device: str = ""

    @property
    def setting(self) -> str:
        return self.label["setting"]

    @property
    def defense(self) -> str:
        return self.label["defense"]

    @property
    def mechanism(self) -> str | None:
        return self.label.get("mechanism")


@dataclass(frozen=True)
class SecaggRecord(Record):
    """Bytes and seconds of one secure-aggregation session; ``aborted`` with ``error`` when too
    few clients survived. The protocol's other counters stay in ``extra``."""

    kind: ClassVar[str] = "secagg"
    clients: int = 0
    dim: int = 0
    dropout: float = 0.0
    active: bool = False
    aborted: bool = False
    correct: bool = False
    error: str | None = None
    neighbors: int | None = None  # None: a complete graph
    client_bytes_sent: float = float("nan")
    expansion: float = float("nan")  # (bytes sent + received) / the float32 update in the clear
    client_seconds: float = float("nan")
    server_seconds: float = float("nan")


@dataclass(frozen=True)
class AuditRecord(Record):
    """An empirical lower bound on ε beside the accountant's (``gradleak audit --out``)."""

    kind: ClassVar[str] = "audit"
    defense: str = ""
    level: str = ""
    epsilon_lower: float = float("nan")
    epsilon_accountant: float = float("nan")
    confidence: float = float("nan")
    one_run_epsilon_lower: float | None = None
    auc: float = float("nan")
    advantage: float = float("nan")
    trials: int = 0


@dataclass(frozen=True)
class PropertyRecord(Record):
    """Property-inference ROC AUC (``gradleak property --out``)."""

    kind: ClassVar[str] = "property"
    defense: str = ""
    dataset: str = ""
    cohort: int = 0
    auc: float = float("nan")
    auc_low: float = float("nan")
    auc_high: float = float("nan")
    confidence: float = float("nan")
    trials: int = 0


KINDS: dict[str, type[Record]] = {c.kind: c for c in (AttackRecord, UtilityRecord, SecaggRecord, AuditRecord, PropertyRecord)}

AnyRecord = Union[AttackRecord, UtilityRecord, SecaggRecord, AuditRecord, PropertyRecord, Record]


def from_dict(data: Mapping[str, Any] | Record) -> AnyRecord:
    """The typed record of one JSON object (by its ``kind``; an unknown kind stays a plain :class:`Record`)."""
    if isinstance(data, Record):
        return data
    return KINDS.get(data.get("kind", ""), Record).from_dict(data)


def of_kind(records: Iterable[Mapping[str, Any] | Record], cls: type[R]) -> list[R]:
    """The records of one kind, typed, in their given order."""
    return [r for r in map(from_dict, records) if isinstance(r, cls)]


def load_records(paths: Iterable[str | Path]) -> list[AnyRecord]:
    """Typed records of several results files, their image paths made absolute (they are stored
    relative to the folder of their results file, so a results folder can be moved whole)."""
    records: list[AnyRecord] = []
    for path in map(Path, paths):
        folder = path.parent.resolve()
        for record in map(from_dict, read_records(path)):
            if isinstance(record, AttackRecord) and record.images:
                images = {kind: [str(folder / p) for p in files] for kind, files in record.images.items()}
                record = dataclasses.replace(record, images=images)
            records.append(record)
    return records
