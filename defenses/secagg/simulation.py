"""Secure aggregation on random vectors, checked against the plaintext: what a session costs.

:func:`simulate` runs one session (:func:`~gradleak.defenses.secagg.protocol.run_secagg`) on
random inputs in [-1, 1], checks the unmasked sum against the survivors' quantised inputs, and
:func:`report` turns it into the flat record that ``gradleak secagg``, the cost sweeps and the
benchmarks all read.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradleak.defenses.secagg.fixedpoint import FixedPoint
from gradleak.defenses.secagg.graph import SecurityParameters, plan
from gradleak.defenses.secagg.protocol import Dropouts, SecAggResult, run_secagg
from gradleak.errors import GradleakError

# Vector entries all clients together hold (n * d): every input and mask is in this one process.
MAX_ENTRIES = 200_000_000


def random_input(seed: int, client: int, dim: int) -> np.ndarray:
    """Client ``client``'s random input, uniform in [-1, 1] (the same for any run with this seed)."""
    return np.random.default_rng([seed, client]).uniform(-1, 1, dim)


@dataclass(frozen=True, eq=False)
class Simulation:
    """One session on random vectors, with the plaintext checks done."""

    result: SecAggResult
    parameters: SecurityParameters
    encoder: FixedPoint
    dropouts: Dropouts
    seconds: float
    correct: bool  # the unmasked sum equals the survivors' quantised inputs summed in Z_2^b
    mean: np.ndarray  # the decoded aggregate: the survivors' mean
    max_error: float  # its largest distance to the float mean of their inputs
    bind_model: bool = True  # clients committed to the digest of the model they received


def simulate(
    clients: int,
    dim: int,
    dropout: float = 0.0,
    dropout_round: str = "mask",
    neighbors: int | None = None,
    threshold: int | None = None,
    bits: int = 32,
    active: bool | None = None,
    seed: int = 0,
    bind_model: bool = True,
) -> Simulation:
    """Run the protocol on :func:`random_input` inputs and check the result against the plaintext.

    ``bind_model``: every client commits to the digest of the model it received, as
    ``secagg:bind_model=true`` (the defense's default) does; here all received the same one.
    """
    if dim < 1:
        raise GradleakError(f"the vector length must be at least 1, not {dim}")
    if clients * dim > MAX_ENTRIES:
        raise GradleakError(
            f"{clients} clients x {dim} entries is more than the {MAX_ENTRIES:,} one simulation holds in memory; "
            "lower --clients or --dim"
        )
    parameters = plan(clients, neighbors, threshold, active=active)
    if dropout_round == "consistency" and not parameters.active:
        raise GradleakError("dropping out at the consistency round needs active mode (the round exists only there)")
    encoder = FixedPoint.fitting(clients, clip=1.0, bits=bits)

    def inputs(u: int) -> np.ndarray:
        return encoder.encode(random_input(seed, u, dim), np.random.default_rng([seed, u, 1]))

    dropouts = Dropouts.fraction(clients, dropout, dropout_round, np.random.default_rng(seed))
    start = time.perf_counter()
    digests = [hashlib.sha256(b"gradleak/simulated model").digest()] * clients if bind_model else None
    result = run_secagg(inputs, parameters, dim, bits, dropouts, model_digests=digests)
    seconds = time.perf_counter() - start

    expected = np.zeros(dim, dtype=encoder.dtype)
    reference = np.zeros(dim)
    for u in result.survivors:
        np.add(expected, inputs(u), out=expected)
        reference += random_input(seed, u, dim)
    encoder.reduce(expected)
    mean = encoder.decode(result.total, len(result.survivors))
    return Simulation(
        result, parameters, encoder, dropouts, seconds, bool(np.array_equal(expected, result.total)), mean,
        float(np.abs(mean - reference / len(result.survivors)).max()), bind_model,
    )


def report(sim: Simulation, dropout: float, dropout_round: str) -> dict[str, Any]:
    """The session's outcome and cost as one flat record (what ``gradleak secagg --json`` prints)."""
    result = sim.result
    return {
        "correct": sim.correct,
        **result.summary(),
        "dropout": dropout,
        "dropout_round": dropout_round,
        "dropouts": len(sim.dropouts.all()),
        "active": sim.parameters.active,
        "bind_model": sim.bind_model,
        "value_bits": sim.encoder.value_bits,
        "max_error": sim.max_error,
        "seconds": sim.seconds,
        "security": sim.parameters.describe(dropout),
        "rounds": result.cost.rounds,
    }
