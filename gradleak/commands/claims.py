"""``gradleak claims``: measure the founding claims and write their page (docs/claims.md with --out)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradleak.commands.options import number, out_dir, out_file
from gradleak.showcase.claims import FULL, QUICK, claims_page, measure_claims
from gradleak.spec import MAX_WORKERS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "claims",
        help="measure the seed's claims (secagg overhead, dropouts, cost of ε, participation, join/leave leaks); write claims.md",
        description="Runs the protocol and training measurements behind each claim (resumable: "
        "finished ones are kept in --results and reused) and writes the page with verdicts "
        "computed from the numbers. The full set takes about 50 minutes of compute (half that with --workers 2 on 2 free cores), 3 more for the join/leave trials.",
    )
    # Never docs/ by default: a trial run in a checkout must not overwrite the published page.
    parser.add_argument("--out", type=out_file, default="gradleak-out/claims.md",
                        help="the page to write (default gradleak-out/claims.md; the docs' page: --out docs/claims.md)")
    parser.add_argument("--results", type=out_dir, default="gradleak-out/claims", help="folder for the measurements")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to try the command (not for the docs)")
    parser.add_argument("--workers", type=number(int, 1, MAX_WORKERS), default=1, help="worker processes for the trainings")
    parser.add_argument("--device", default="auto")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    measurements = measure_claims(plan, args.results, args.workers, args.device)
    command = "gradleak claims" + (" --quick" if args.quick else "") + f" --out {args.out}"
    page = claims_page(plan, measurements, command)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    print(f"wrote {out}")
    return 1 if measurements.failures else 0
