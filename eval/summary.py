"""Summaries of attack runs: per (scenario, attack, defense) mean ± std and attack success rate.

Statistics pool the per-image scores of every seed of a group, so a batch of 4 over 3 seeds
contributes 12 images. The attack success rate is the share of those images reconstructed at
or above a PSNR threshold (20 dB by default, where a reconstruction is plainly recognisable).
A perfect copy has PSNR = inf; a group's mean is then inf, and its median stays informative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from gradleak.eval.metrics import format_db
from gradleak.eval.records import AttackRecord, Record, of_kind

SUCCESS_DB = 20.0  # PSNR at or above which an image counts as leaked


def number(value: Any) -> float:
    """A metric read back from JSON ('inf', 'nan' strings included) as a float; None -> nan."""
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class Stat:
    """Mean, standard deviation (population) and median of a sample; nan when empty."""

    mean: float
    std: float
    median: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> "Stat":
        array = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
        if array.size == 0:
            return cls(math.nan, math.nan, math.nan, 0)
        finite = np.isfinite(array).all()
        return cls(
            mean=float(array.mean()),
            std=float(array.std()) if finite else math.nan,
            median=float(np.median(array)),
            n=int(array.size),
        )

    def format(self, digits: int = 1, db: bool = False) -> str:
        show = format_db if db else (lambda v: "nan" if math.isnan(v) else f"{v:.{digits}f}")
        if self.n == 0:
            return "–"
        if self.n == 1 or math.isnan(self.std):
            return show(self.mean)
        return f"{show(self.mean)} ± {show(self.std)}"


@dataclass
class Group:
    """The runs of one (scenario, attack, defense) cell of a grid."""

    scenario: str
    attack: str
    defense: str
    records: list[AttackRecord] = field(default_factory=list)

    def per_image(self, metric: str) -> list[float]:
        return [number(image[metric]) for r in self.records for image in r.per_image]

    @property
    def psnr(self) -> Stat:
        return Stat.of(self.per_image("psnr"))

    @property
    def ssim(self) -> Stat:
        return Stat.of(self.per_image("ssim"))

    @property
    def mse(self) -> Stat:
        return Stat.of(self.per_image("mse"))

    @property
    def label_accuracy(self) -> Stat:
        return Stat.of(float(bool(c)) for c in self.per_image("label_correct"))

    @property
    def stopped(self) -> int:
        """Runs whose round a defense stopped before the server saw an update (nothing recovered)."""
        return sum(1 for r in self.records if r.stopped)

    def success_rate(self, threshold_db: float = SUCCESS_DB) -> float:
        """Share of images at or above the threshold; a stopped run's images count as not recovered."""
        values = self.per_image("psnr")
        missed = sum(r.batch_size for r in self.records if r.stopped)
        total = len(values) + missed
        return float(sum(v >= threshold_db for v in values) / total) if total else math.nan

    @property
    def epsilon(self) -> float | None:
        """The group's ε when every run states the same one (DP defenses), else None."""
        values = {r.epsilon for r in self.records}
        return number(values.pop()) if len(values) == 1 and None not in values else None

    @property
    def seconds(self) -> Stat:
        return Stat.of(number(r.cost["attack_seconds"]) for r in self.records)

    @property
    def evaluations(self) -> Stat:
        """Gradient evaluations the attack spent, where it reports them (its effort, for fair comparisons)."""
        return Stat.of(number(r.attack_info.get("evaluations")) for r in self.records)

    @property
    def upload_bytes(self) -> Stat:
        return Stat.of(number(r.cost.get("client_bytes_sent")) for r in self.records)


def group_runs(records: Iterable[Record | dict[str, Any]]) -> list[Group]:
    """Attack records (typed, or as read from JSON) grouped by their (scenario, attack, defense)
    labels, in the order of the grid that produced them (each record's ``position``), not the
    order the runs finished in."""
    groups: dict[tuple[str, str, str], Group] = {}
    for record in sorted(of_kind(records, AttackRecord), key=lambda r: r.position):
        key = (record.scenario, record.attack, record.defense)
        groups.setdefault(key, Group(*key)).records.append(record)
    return list(groups.values())


@dataclass(frozen=True)
class Verdict:
    """Whether a defense held in one scenario, judged by the strongest attack run against it.

    A defense is only as strong as the best attack on it: where an oblivious and a
    defense-aware (``adaptive=true``) attack both ran, the one that recovers more decides.
    """

    scenario: str
    defense: str
    groups: tuple[Group, ...]  # every attack run against the defense there
    threshold_db: float = SUCCESS_DB

    @property
    def strongest(self) -> Group:
        """The attack with the highest success rate, then the highest median and mean PSNR."""
        def strength(g: Group) -> tuple[float, float, float]:
            return tuple(-math.inf if math.isnan(v) else v
                         for v in (g.success_rate(self.threshold_db), g.psnr.median, g.psnr.mean))

        return max(self.groups, key=strength)

    @property
    def verdict(self) -> str:
        """``leaks`` when the strongest attack recovers any image at the threshold or above, else ``holds``."""
        return "leaks" if self.strongest.success_rate(self.threshold_db) > 0 else "holds"


def defense_verdicts(groups: Iterable[Group], threshold_db: float = SUCCESS_DB) -> list[Verdict]:
    """One :class:`Verdict` per (scenario, defense) other than ``none``, in the groups' order."""
    cells: dict[tuple[str, str], list[Group]] = {}
    for g in groups:
        if g.defense != "none":
            cells.setdefault((g.scenario, g.defense), []).append(g)
    return [Verdict(scenario, defense, tuple(gs), threshold_db) for (scenario, defense), gs in cells.items()]


VERDICT_COLUMNS = ("scenario", "defense", "attacks", "strongest attack", "PSNR dB", "success", "verdict")


def verdict_rows(verdicts: Iterable[Verdict]) -> list[tuple[str, ...]]:
    """The verdict table as strings, in :data:`VERDICT_COLUMNS` order."""
    rows = []
    for v in verdicts:
        best = v.strongest
        rows.append((
            v.scenario, v.defense, str(len(v.groups)), best.attack, best.psnr.format(db=True),
            f"{100 * best.success_rate(v.threshold_db):.0f}%", v.verdict,
        ))
    return rows


TABLE_COLUMNS = (
    "scenario", "attack", "defense", "ε", "runs", "PSNR dB", "SSIM", "label acc", "success", "evaluations", "s/attack",
)


def table_rows(groups: Iterable[Group], threshold_db: float = SUCCESS_DB) -> list[tuple[str, ...]]:
    """The summary table as strings, one row per group, in :data:`TABLE_COLUMNS` order."""
    rows = []
    for g in groups:
        eps = g.epsilon
        rows.append((
            g.scenario,
            g.attack,
            g.defense,
            "–" if eps is None else f"{eps:.3g}",
            str(len(g.records)),
            g.psnr.format(db=True) if g.stopped < len(g.records) else "stopped",
            g.ssim.format(digits=3),
            "–" if g.label_accuracy.n == 0 else f"{100 * g.label_accuracy.mean:.0f}%",
            f"{100 * g.success_rate(threshold_db):.0f}%",
            "–" if g.evaluations.n == 0 else f"{g.evaluations.mean:,.0f}",
            "–" if g.stopped == len(g.records) else f"{g.seconds.mean:.1f}",
        ))
    return rows


def text_table(rows: list[tuple[str, ...]], columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
    """A plain aligned table for the terminal."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()

    return "\n".join([line(columns), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])


def markdown_table(rows: list[tuple[str, ...]], columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    return "\n".join([head, rule, *("| " + " | ".join(r) + " |" for r in rows)])
