"""``gradleak secagg``: run secure aggregation on random vectors, check the sum, print the cost."""

from __future__ import annotations

import argparse
import json

from gradleak.commands.options import SEED, number
from gradleak.defenses.secagg.fixedpoint import MAX_BITS
from gradleak.defenses.secagg.messages import ROUNDS, TITLES
from gradleak.defenses.secagg.protocol import SecAggResult
from gradleak.defenses.secagg.simulation import MAX_ENTRIES, report, simulate
from gradleak.spec import MAX_CLIENTS



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
    parser.add_argument(
        "--bind-model", action=argparse.BooleanOptionalAction, default=True,
        help="clients commit to the digest of the model they received, as the secagg defense does by default (default on)",
    )
    parser.add_argument("--seed", type=SEED, default=0, help="seed for the test vectors and who drops (keys stay random)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sim = simulate(
        args.clients, args.dim, args.dropout, args.dropout_round, args.neighbors, args.threshold, args.bits,
        args.active, args.seed, args.bind_model,
    )
    record = report(sim, args.dropout, args.dropout_round)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print_report(record, sim.result)
    return 0 if record["correct"] else 1


def print_report(record: dict, result: SecAggResult) -> None:
    print(record["security"])
    print(
        f"{record['dropouts']} clients dropped at {TITLES[record['dropout_round']]}; the sum holds "
        f"{record['survivors']} of {record['clients']} inputs and {'equals' if record['correct'] else 'DIFFERS FROM'} "
        f"the plaintext sum of those {record['value_bits']}-bit inputs in Z_2^{record['bits']}"
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
        ("bytes sent per client", f"{record['client_bytes_sent']:,.0f}"),
        ("bytes received per client", f"{record['client_bytes_received']:,.0f}"),
        ("float32 update in the clear", f"{record['plaintext_bytes']:,}"),
        ("expansion (sent + received) / clear", f"{record['expansion']:.3f}x"),
        ("upload expansion sent / clear", f"{record['upload_expansion']:.3f}x"),
        ("client compute, mean / max", f"{record['client_seconds']:.3f} s / {record['client_seconds_max']:.3f} s"),
        ("server compute", f"{record['server_seconds']:.3f} s"),
        ("server bytes sent / received", f"{record['server_bytes_sent']:,} / {record['server_bytes_received']:,}"),
        ("largest error of the mean vs float", f"{record['max_error']:.2e}"),
        ("survivor graph components", str(record["survivor_components"])),
        ("mode; resists a lying server", f"{'active' if record['active'] else 'passive'}; "
                                         f"{'yes' if record['resists_lying_server'] else 'NO (sparse, passive)'}"),
        ("model digest bound into the session", "yes" if record["bind_model"] else "no (--no-bind-model)"),
        ("clients excluded / caught cheating", f"{record['excluded']} / {record['cheaters']}"),
        ("wall time (all parties, one process)", f"{record['seconds']:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
