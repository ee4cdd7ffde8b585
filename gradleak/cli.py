"""The ``gradleak`` command.

Each subcommand lives in its own module under :mod:`gradleak.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``. A mistake
the user can fix surfaces as :class:`~gradleak.errors.GradleakError`: one line on stderr,
exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from gradleak import __version__
from gradleak.commands.options import OneLineParser
from gradleak.errors import GradleakError
from gradleak.progress import set_quiet

# Order here is the order in `gradleak --help`.
COMMANDS = ("demo", "attack", "evaluate", "report", "utility", "claims", "secagg", "privacy", "audit", "property", "list")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="gradleak",
        description="Show, measure and stop gradient leakage in federated learning.",
    )
    parser.add_argument("--version", action="version", version=f"gradleak {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"gradleak.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    set_quiet(args.quiet)
    try:
        return int(args.func(args) or 0)
    except GradleakError as exc:
        print(f"gradleak: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gradleak: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
