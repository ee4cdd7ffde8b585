"""``gradleak privacy``: the accountant on the command line.

``gradleak privacy epsilon --noise-multiplier 1.384 --sample-rate 0.125 --steps 24 --delta 1e-5``
prints the epsilon reached; ``gradleak privacy noise --epsilon 3 ...`` the noise multiplier that
reaches it. ``--json`` prints one object with ``epsilon``, ``noise_multiplier``, ``accountant``
and the other settings.
"""

from __future__ import annotations

import argparse
import json

from gradleak.commands.options import field_type
from gradleak.defenses.accounting import ACCOUNTANTS, PLD_LIMIT, DPSettings, account, calibrate_noise_multiplier
from gradleak.eval.metrics import jsonable


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "privacy",
        help="DP accountant: epsilon for a noise multiplier, or the noise multiplier for an epsilon",
        description="Account for T steps of the Gaussian mechanism on a Poisson sample of rate Q "
        "(DP-SGD steps, or DP-FedAvg rounds), with dp-accounting's PLD or RDP accountant.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    epsilon = actions.add_parser("epsilon", help="the epsilon a noise multiplier reaches")
    epsilon.add_argument("--noise-multiplier", type=field_type(DPSettings, "noise_multiplier"), required=True, metavar="SIGMA",
                         help="noise standard deviation divided by the clip norm")
    epsilon.set_defaults(func=run_epsilon)
    noise = actions.add_parser("noise", help="the smallest noise multiplier that reaches an epsilon")
    noise.add_argument("--epsilon", type=field_type(DPSettings, "epsilon"), required=True, metavar="EPS", help="the target epsilon")
    noise.set_defaults(func=run_noise)
    for action in (epsilon, noise):
        action.add_argument("--sample-rate", type=field_type(DPSettings, "sample_rate"), default=1.0, metavar="Q",
                            help="Poisson sampling rate of an example (or client) per step (default 1)")
        action.add_argument("--steps", type=field_type(DPSettings, "steps"), default=1, metavar="T", help="number of noised steps or rounds (default 1)")
        action.add_argument("--delta", type=field_type(DPSettings, "delta"), default=1e-5, metavar="D", help="the delta of (epsilon, delta)-DP (default 1e-5)")
        action.add_argument("--accountant", choices=ACCOUNTANTS, default="pld", help="default pld (tight); rdp is an upper bound")
        action.add_argument("--json", action="store_true", help="print one JSON object")


def _report(args: argparse.Namespace, noise_multiplier: float) -> int:
    epsilon, accountant = account(noise_multiplier, args.sample_rate, args.steps, args.delta, args.accountant)
    result = {
        "epsilon": epsilon,
        "noise_multiplier": noise_multiplier,
        "accountant": accountant,
        "sample_rate": args.sample_rate,
        "steps": args.steps,
        "delta": args.delta,
    }
    if args.json:
        print(json.dumps(jsonable(result)))
        return 0
    print(
        f"epsilon {epsilon:.4g} at delta {args.delta:g} with noise multiplier {noise_multiplier:.4g}, "
        f"sample rate {args.sample_rate:g}, {args.steps} step(s) ({accountant.upper()} accountant)"
    )
    if accountant != args.accountant:
        print(f"(RDP's bound is past epsilon {PLD_LIMIT:g}, where PLD is slow and the guarantee void; it is shown)")
    return 0


def run_epsilon(args: argparse.Namespace) -> int:
    return _report(args, args.noise_multiplier)


def run_noise(args: argparse.Namespace) -> int:
    return _report(args, calibrate_noise_multiplier(args.epsilon, args.sample_rate, args.steps, args.delta, args.accountant))
