"""``gradleak utility``: the accuracy a defense costs, measured by federated training."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from gradleak.commands.options import SEED, field_type, number, out_dir
from gradleak.eval.sweep.plan import parse_stack
from gradleak.eval.report import UTILITY_COLUMNS, utility_rows
from gradleak.eval.sweep.tasks import run_tasks
from gradleak.eval.summary import text_table
from gradleak.eval.utility import UTILITY_RESULTS, UtilityConfig, plan_utility, train_federated
from gradleak.spec import MAX_WORKERS, make_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "utility",
        help="train with FedAvg under each defense and report test accuracy (the cost of ε)",
        description="FedAvg over --clients clients (--cohort per round) on embedded data, once per "
        "defense stack and seed; prints test accuracy and writes OUT/utility.jsonl (resumable; "
        "`gradleak report` plots accuracy against ε). DP defenses are told the schedule "
        "(steps, sample rate) unless their spec sets it.",
    )
    parser.add_argument("--defense", dest="defenses", action="append", metavar="STACK",
                        help="a defense stack: none, a spec, or specs joined by '+' (repeatable; default none)")
    parser.add_argument("--epsilons", type=number(float, 0, None, low_open=True), nargs="+", metavar="E",
                        help="add one stack MECHANISM:epsilon=E per value (e.g. --epsilons 1 3 8)")
    parser.add_argument("--mechanism", default="dp-fedavg", help="the DP defense --epsilons uses (default dp-fedavg)")
    parser.add_argument("--seeds", type=SEED, nargs="+", default=[0], metavar="S")
    parser.add_argument("--workers", type=number(int, 1, MAX_WORKERS), default=1, help="worker processes (default 1)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--private-noise", action="store_true",
                        help="draw DP noise from the OS CSPRNG (default: seeded, reproducible, not private)")
    parser.add_argument("--out", type=out_dir, default="gradleak-out/utility", help="folder for utility.jsonl")
    options = parser.add_argument_group("training (defaults in brackets)")
    for f in dataclasses.fields(UtilityConfig):
        options.add_argument("--" + f.name.replace("_", "-"), dest=f"config_{f.name}", metavar=f.name.upper(),
                             type=field_type(UtilityConfig, f.name), help=f"[{f.default}]")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    values = {k[len("config_"):]: v for k, v in vars(args).items() if k.startswith("config_") and v is not None}
    config = make_config(UtilityConfig, values, "utility")
    stacks = [parse_stack(d, "--defense") for d in (args.defenses or ["none"])]
    stacks += [(f"{args.mechanism}:epsilon={eps:g}",) for eps in args.epsilons or []]
    runs = plan_utility(config, stacks, args.seeds, args.device, args.private_noise)
    results = Path(args.out) / UTILITY_RESULTS
    print(f"{len(runs)} training run(s): {config.rounds} rounds of {config.cohort} of {config.clients} clients "
          f"on {config.dataset}; results in {results}")
    outcome = run_tasks(runs, results, train_federated, args.workers)
    keys = {r.key for r in runs}
    print(text_table(utility_rows([r for r in outcome.store.records if r["key"] in keys]), UTILITY_COLUMNS))
    print(outcome.describe())
    return 1 if outcome.failures else 0
