"""``gradleak secagg``: run secure aggregation on random vectors, check the sum, print the cost."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

import numpy as np

from gradleak.commands.options import SEED, number
from gradleak.defenses.secagg.fixedpoint import MAX_BITS, FixedPoint
from gradleak.defenses.secagg.graph import SecurityParameters, plan
from gradleak.defenses.secagg.messages import ROUNDS, TITLES
from gradleak.defenses.secagg.protocol import Dropouts, SecAggResult, run_secagg
from gradleak.errors import GradleakError
from gradleak.spec import MAX_CLIENTS

# Vector entries all clients together hold (n * d): every input and mask is in this one process.
MAX_ENTRIES = 200_000_000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "secagg",
        help="run secure aggregation on random vectors and print its cost",
        description="Run the Bonawitz et al. secure-aggregation protocol (SecAgg+ for large cohorts) on "
        "random vectors in [-1, 1], check the unmasked sum against the plaintext sum of the "
        "surviving clients' quantised inputs, and print bytes and seconds per party.",
    )
    parser.add_argument("--clients", type=number(int, 2, MAX_CLIENTS), required=True, help="cohort size n")
    parser.add_argument("--dim", type=number(int, 1, MAX_ENTRIES), required=True, help="vector length d")
    parser.add_argument("--dropout", type=number(float, 0, 1, high_open=True), default=0.0, help="fraction of clients that drop out (default 0)")
    parser.add_argument(
        "--dropout-round", choices=ROUNDS, default="mask",
        help="the round they drop at; 'mask' = after ShareKeys, before sending the masked input (default)",
    )
    parser.add_argument(
        "--threshold", type=number(int, 2, MAX_CLIENTS), help="Shamir threshold t per neighbourhood (default: a majority; above 2/3 with --active)"
    )
    parser.add_argument("--neighbors", type=number(int, 1, MAX_CLIENTS), help="SecAgg+ neighbours k (default: complete for small n, O(log n) otherwise)")
    parser.add_argument("--bits", type=number(int, 1, MAX_BITS), default=32, help="ring Z_2^b of the masked entries (default 32)")
    parser.add_argument(
        "--active", action=argparse.BooleanOptionalAction, default=None,
        help="active-adversary mode: signatures and a consistency check (default: on for sparse graphs, "
        "where passive SecAgg+ lets a lying server read inputs)",
    )
    parser.add_argument("--seed", type=SEED, default=0, help="seed for the test vectors and who drops (keys stay random)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.set_defaults(func=run)


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
) -> Simulation:
    """Run the protocol on :func:`test_vector` inputs and check the result against the plaintext."""
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
    result = run_secagg(inputs, parameters, dim, bits, dropouts)
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
        float(np.abs(mean - reference / len(result.survivors)).max()),
    )


def run(args: argparse.Namespace) -> int:
    sim = simulate(
        args.clients, args.dim, args.dropout, args.dropout_round, args.neighbors, args.threshold, args.bits,
        args.active, args.seed,
    )
    result = sim.result
    report = {
        "correct": sim.correct,
        **result.summary(),
        "dropout": args.dropout,
        "dropout_round": args.dropout_round,
        "dropouts": len(sim.dropouts.all()),
        "active": sim.parameters.active,
        "value_bits": sim.encoder.value_bits,
        "max_error": sim.max_error,
        "seconds": sim.seconds,
        "security": sim.parameters.describe(args.dropout),
        "rounds": result.cost.rounds,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, result)
    return 0 if report["correct"] else 1


def print_report(report: dict, result: SecAggResult) -> None:
    print(report["security"])
    print(
        f"{report['dropouts']} clients dropped at {TITLES[report['dropout_round']]}; the sum holds "
        f"{report['survivors']} of {report['clients']} inputs and {'equals' if report['correct'] else 'DIFFERS FROM'} "
        f"the plaintext sum of those {report['value_bits']}-bit inputs in Z_2^{report['bits']}"
    )
    print()
    print(f"{'round':<24}{'client sent B':>15}{'client recv B':>15}{'client s':>11}{'server s':>11}")
    for name, row in result.cost.rounds.items():
        clients = max(row["clients"], 1)
        print(
            f"{TITLES[name]:<24}{row['client_bytes_sent'] / clients:>15,.0f}"
            f"{row['client_bytes_received'] / clients:>15,.0f}{row['client_seconds'] / clients:>11.4f}"
            f"{row['server_seconds']:>11.3f}"
        )
    print("(client columns: mean over the clients live in that round)")
    print()
    rows = [
        ("bytes sent per client", f"{report['client_bytes_sent']:,.0f}"),
        ("bytes received per client", f"{report['client_bytes_received']:,.0f}"),
        ("float32 update in the clear", f"{report['plaintext_bytes']:,}"),
        ("expansion (sent + received) / clear", f"{report['expansion']:.3f}x"),
        ("upload expansion sent / clear", f"{report['upload_expansion']:.3f}x"),
        ("client compute, mean / max", f"{report['client_seconds']:.3f} s / {report['client_seconds_max']:.3f} s"),
        ("server compute", f"{report['server_seconds']:.3f} s"),
        ("server bytes sent / received", f"{report['server_bytes_sent']:,} / {report['server_bytes_received']:,}"),
        ("largest error of the mean vs float", f"{report['max_error']:.2e}"),
        ("survivor graph components", str(report["survivor_components"])),
        ("mode; resists a lying server", f"{'active' if report['active'] else 'passive'}; "
                                         f"{'yes' if report['resists_lying_server'] else 'NO (sparse, passive)'}"),
        ("clients excluded / caught cheating", f"{report['excluded']} / {report['cheaters']}"),
        ("wall time (all parties, one process)", f"{report['seconds']:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
