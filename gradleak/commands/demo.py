"""``gradleak demo``: the main job on embedded data."""

from __future__ import annotations

import argparse

from gradleak.errors import GradleakError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="attack and defend on embedded data, write a report")
    parser.add_argument("--quick", action="store_true", help="a sub-minute version")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise GradleakError("the demo is not built yet (see issue 6); try `gradleak list` meanwhile")
