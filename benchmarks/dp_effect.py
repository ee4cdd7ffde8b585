"""DLG's PSNR against DP noise, pruning and quantisation: the table of docs/benchmarks.md.

Runs the grid of ``benchmarks/dp_effect.toml`` through the harness (resumable: a rerun skips
finished runs) and prints the summary as markdown, with epsilon for the DP rows.

    python benchmarks/dp_effect.py [--workers N] [--device cuda] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gradleak.eval.sweep.plan import load_config, plan
from gradleak.eval.sweep.execute import run_grid
from gradleak.eval.summary import group_runs, markdown_table, table_rows

CONFIG = Path(__file__).with_suffix(".toml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int)
    parser.add_argument("--device")
    parser.add_argument("--out")
    args = parser.parse_args()
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    config = load_config(CONFIG, overrides, {})
    runs = plan(config)
    outcome = run_grid(runs, config.settings.out, config.settings.workers)
    keys = {r.key for r in runs}
    records = [r for r in outcome.store.records if r.get("key") in keys]
    print(markdown_table(table_rows(group_runs(records), config.settings.threshold_db)))
    print(outcome.describe())


if __name__ == "__main__":
    main()
