"""What secure aggregation costs as the cohort grows: bytes and seconds per party.

Each point is one session of the real protocol on random vectors, its sum checked against the
plaintext sum (:func:`gradleak.defenses.secagg.simulation.simulate`); its record is the one
``gradleak secagg --json`` prints, so the report plots and the claims quote what the command shows.
Points are tasks for :func:`~gradleak.eval.sweep.tasks.run_tasks`, so a sweep resumes like any other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from gradleak.defenses.secagg.messages import ProtocolAbort
from gradleak.defenses.secagg.simulation import report, simulate
from gradleak.eval.store import run_key

SECAGG_RESULTS = "secagg.jsonl"


@dataclass(frozen=True)
class CostPoint:
    clients: int
    dim: int
    dropout: float = 0.0
    dropout_round: str = "mask"  # after ShareKeys: the server must recover the dropped clients' masks
    neighbors: int | None = None  # None: the command's default graph
    active: bool = False  # signatures and a consistency check; a threshold above 2/3
    seed: int = 0
    plugins: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return run_key({"secagg": {k: v for k, v in asdict(self).items() if k != "plugins"}})

    @property
    def title(self) -> str:
        return f"secagg n={self.clients} d={self.dim} dropout={self.dropout:g}" + (" active" if self.active else "")


def measure(point: CostPoint) -> dict[str, Any]:
    """Run the protocol once at ``point`` and return its cost record (kind ``secagg``).

    A clean abort (fewer survivors than the threshold) is an outcome, recorded with
    ``aborted: true`` and the protocol's message.
    """
    identity = {"key": point.key, "kind": "secagg", "clients": point.clients, "dim": point.dim,
                "dropout": point.dropout, "active": point.active, "seed": point.seed}
    try:
        # active is explicit: sparse graphs default to active mode
        sim = simulate(point.clients, point.dim, point.dropout, point.dropout_round, point.neighbors,
                       active=point.active, seed=point.seed)
    except ProtocolAbort as abort:
        return {**identity, "aborted": True, "correct": False, "error": str(abort)}
    return {**report(sim, point.dropout, point.dropout_round), **identity, "aborted": False}
