"""``gradleak list``: what is registered, one name per line under a heading each."""

from __future__ import annotations

import argparse

from gradleak.attacks import ATTACKS
from gradleak.data import DATASETS
from gradleak.defenses import DEFENSES
from gradleak.models import model_names
from gradleak.servers import SERVERS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="list attacks, defenses, servers, models and datasets")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sections = {
        "attacks": ATTACKS.names(),
        "defenses": ["none", *DEFENSES.names()],
        "servers": SERVERS.names(),
        "models": model_names(),
        "datasets": DATASETS.names(),
    }
    for heading, names in sections.items():
        print(f"{heading}:")
        for name in names:
            print(f"  {name}")
    return 0
