"""``gradleak report``: report.md and a self-contained report.html from result files."""

from __future__ import annotations

import argparse

from gradleak.commands.options import in_file, number, out_dir
from gradleak.eval.records import load_records
from gradleak.eval.report import write_report
from gradleak.eval.summary import SUCCESS_DB


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write report.md and report.html (tables, image grids, plots) from results",
        description="Reads result files (from `gradleak evaluate`, `gradleak utility` and the "
        "secure-aggregation cost sweep, in any mix) and writes DIR/report.md with its figures and "
        "DIR/report.html with everything embedded.",
    )
    parser.add_argument("results", nargs="+", type=in_file, metavar="RESULTS.jsonl")
    parser.add_argument("--out", type=out_dir, required=True, metavar="DIR", help="folder for the report")
    parser.add_argument("--threshold-db", type=number(float, 0, 1000), default=SUCCESS_DB,
                        help=f"PSNR counted as attack success (default {SUCCESS_DB:g})")
    parser.add_argument("--title", default="gradleak report")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    md, html = write_report(load_records(args.results), args.out, threshold_db=args.threshold_db, title=args.title)
    print(f"wrote {md}\nwrote {html}")
    return 0
