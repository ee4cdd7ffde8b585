"""What secure aggregation costs as the cohort grows: bytes and seconds per party.

Each point is one run of ``gradleak secagg --json`` (the real protocol on random vectors, its
sum checked against the plaintext sum), called in-process so its JSON output is the interface:
whatever the secure-aggregation command reports is what the report plots and the claims quote.
Points are tasks for :func:`~gradleak.eval.runner.run_tasks`, so a sweep resumes like any other.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

from gradleak.errors import GradleakError
from gradleak.eval.results import run_key

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

    def argv(self) -> list[str]:
        argv = ["secagg", "--clients", str(self.clients), "--dim", str(self.dim), "--dropout", str(self.dropout),
                "--dropout-round", self.dropout_round, "--seed", str(self.seed), "--json"]
        argv += ["--neighbors", str(self.neighbors)] if self.neighbors is not None else []
        return argv + (["--active"] if self.active else ["--no-active"])  # explicit: sparse graphs default to active


def measure(point: CostPoint) -> dict[str, Any]:
    """Run the protocol once at ``point`` and return its cost record (kind ``secagg``).

    A clean abort (fewer survivors than the threshold) is an outcome, recorded with
    ``aborted: true`` and the protocol's message.
    """
    from gradleak.cli import main  # the command registry imports eval modules; import late

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["--quiet", *point.argv()])
    identity = {"key": point.key, "kind": "secagg", "clients": point.clients, "dim": point.dim,
                "dropout": point.dropout, "active": point.active, "seed": point.seed}
    if status == 2:
        message = err.getvalue().strip().removeprefix("gradleak: error: ")
        if "abort" not in message.lower() and "threshold" not in message.lower():
            raise GradleakError(f"gradleak {' '.join(point.argv())} failed: {message}")
        return {**identity, "aborted": True, "correct": False, "error": message}
    return {**json.loads(out.getvalue()), **identity, "aborted": False}
