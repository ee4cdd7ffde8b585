"""The ``gradleak`` command.

Each subcommand lives in its own module under :mod:`gradleak.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``. A mistake
the user can fix surfaces as :class:`~gradleak.errors.GradleakError`: one line on stderr,
exit status 2, no traceback.

The command owns its process, so it alone sets torch's numeric path, from ``--threads`` and
``--onednn`` (:class:`~gradleak.compute.Compute`), for the command's duration.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from gradleak import __version__
from gradleak.commands.options import OneLineParser, number
from gradleak.compute import Compute, parse_switch
from gradleak.errors import GradleakError
from gradleak.progress import set_quiet

MAX_THREADS = 1024  # far above any CPU's cores: a typo, not a machine

# Order here is the order in `gradleak --help`.
COMMANDS = ("demo", "app", "attack", "evaluate", "report", "utility", "claims", "secagg", "privacy", "audit", "property", "list")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="gradleak",
        description="Show, measure and stop gradient leakage in federated learning.",
    )
    parser.add_argument("--version", action="version", version=f"gradleak {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=number(int, 1, MAX_THREADS), default=1, metavar="N",
                        help="torch intra-op threads on the CPU (default 1: same numbers on any load)")
    parser.add_argument("--onednn", choices=("on", "off"), default="on",
                        help="oneDNN CPU convolutions (default on, torch's own default)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"gradleak.commands.{name}").register(subparsers)
    return parser


def compute_from(args: argparse.Namespace) -> Compute:
    """The global ``--threads`` and ``--onednn`` options as a :class:`Compute`."""
    return Compute(threads=args.threads, onednn=parse_switch(args.onednn))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    set_quiet(args.quiet)
    try:
        with compute_from(args).applied():
            return int(args.func(args) or 0)
    except GradleakError as exc:
        print(f"gradleak: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gradleak: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
