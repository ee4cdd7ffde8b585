"""``gradleak audit``: what a defense's DP promises, measured.

``gradleak audit --defense "dp-sgd:epsilon=2" --json`` runs the defense's release many times with
and without a canary and prints ``epsilon_lower`` (an empirical lower bound on epsilon at
``confidence``) beside ``epsilon_accountant``, with the attack's TPR/FPR, AUC and advantage, and
the one-run canary audit where it applies (:mod:`gradleak.eval.audit`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

from gradleak.commands.options import field_type, out_dir
from gradleak.eval.audit import AuditConfig, audit
from gradleak.eval.measures import measure_once
from gradleak.eval.metrics import jsonable

OPTIONS = ("level", "dataset", "model", "examples", "cohort", "trials", "canaries", "guesses", "canary_norm", "confidence", "seed")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="empirical lower bound on a defense's epsilon, beside the accountant's",
        description="Distinguish neighbouring datasets (with/without one canary example or client) from "
        "the defense's real releases; Clopper-Pearson bounds turn the attack's rates into epsilon_lower.",
    )
    parser.add_argument("--defense", default="none", metavar="SPEC",
                        help='defense stack, specs joined by "+" (e.g. "dp-distributed:epsilon=3,clients=9 + secagg")')
    defaults = {f.name: f.default for f in fields(AuditConfig)}
    for name in OPTIONS:
        flag = "--" + name.replace("_", "-")
        kwargs = {"choices": ("auto", "example", "client")} if name == "level" else {"type": field_type(AuditConfig, name)}
        parser.add_argument(flag, default=defaults[name], **kwargs, help=f"default {defaults[name]}")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=out_dir, metavar="DIR",
                        help="also append the result to DIR/results.jsonl for `gradleak report` (reused if already there)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = AuditConfig(**{name: getattr(args, name) for name in OPTIONS})
    if args.out:
        result = measure_once(args.out, "audit", args.defense, config, lambda: audit(args.defense, config).to_dict())
    else:
        result = audit(args.defense, config).to_dict()
    if args.json:
        print(json.dumps(jsonable(result)))
        return 0
    print(
        f"{result['defense']} ({result['level']} level): epsilon_lower {result['epsilon_lower']:.3g} "
        f"(confidence {result['confidence']:g}, {result['trials']} releases, at most {result['epsilon_cap']:.3g} "
        f"with this many) vs accountant {result['epsilon_accountant']:.3g} at delta {result['delta']:g}"
    )
    print(f"attack: TPR {result['tpr']:.3f}, FPR {result['fpr']:.3f}, AUC {result['auc']:.3f}, advantage {result['advantage']:.3f}")
    if result["one_run_epsilon_lower"] is not None:
        print(f"one run: {result['one_run_correct']} of {result['one_run_guesses']} guesses right over "
              f"{result['one_run_canaries']} canaries: epsilon_lower {result['one_run_epsilon_lower']:.3g}")
    return 0
