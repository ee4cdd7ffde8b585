"""``gradleak demo``: the main job on embedded data."""

from __future__ import annotations

import argparse
import os

from gradleak.commands.options import number, out_dir
from gradleak.spec import MAX_WORKERS
from gradleak.showcase.demo import FULL, QUICK, run_demo


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="attack and defend on embedded data, write a report",
        description="iDLG on faces and photos against no defense, pruning, DP-SGD at ε = 8, 3, 1 "
        "and secure aggregation over a cohort of 8 clients (and DLG without defense); then "
        "secure aggregation's cost, and the accuracy client-level DP (DP-FedAvg at ε = 8, 3, 1) costs "
        "federated training with 10 and with 100 clients per round. Prints the tables and writes a "
        "report folder. A second run reuses finished results from the same --out.",
    )
    parser.add_argument("--quick", action="store_true", help="a sub-minute version (one dataset, fewer defenses)")
    parser.add_argument("--out", type=out_dir, default="gradleak-out/demo", help="output folder (default gradleak-out/demo)")
    parser.add_argument("--workers", type=number(int, 1, MAX_WORKERS), default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    outcome = run_demo(QUICK if args.quick else FULL, args.out, args.workers, args.device)
    print()
    print(outcome.table)
    if outcome.utility:
        print("\nprivacy against utility: FedAvg on digits, client-level DP-FedAvg (clip 1, δ = 1e-5) over "
              "the whole training; its noise on the average shrinks as 1/(clients per round)\n")
        print(outcome.utility)
    for note in outcome.notes:
        print(f"note: {note}")
    print(f"\nfinished in {outcome.seconds:.0f} s; report: {outcome.report}")
    return 0
