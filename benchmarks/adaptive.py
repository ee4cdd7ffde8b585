"""Oblivious against defense-aware iDLG on faces: the table of docs/benchmarks.md ("Adaptive attacks").

Runs the grid of ``benchmarks/adaptive.toml`` through the harness (resumable: a rerun skips
finished runs), prints the summary as markdown, then one line per defense: the oblivious and
the adaptive attack's mean PSNR side by side and the defense's verdict (the stronger attack's).

    python benchmarks/adaptive.py [--workers N] [--device cuda] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gradleak.eval.sweep.plan import load_config, plan
from gradleak.eval.sweep.execute import run_grid
from gradleak.eval.summary import defense_verdicts, group_runs, markdown_table, table_rows

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
    groups = group_runs(r for r in outcome.store.records if r.get("key") in keys)
    threshold = config.settings.threshold_db
    print(markdown_table(table_rows(groups, threshold)))
    print()
    rows = []
    for verdict in defense_verdicts(groups, threshold):
        by_attack = {g.attack: g for g in verdict.groups}
        oblivious, adaptive = (by_attack.get(a) for a in config.scenarios[0].attacks)
        rows.append((
            verdict.defense, oblivious.psnr.format(db=True) if oblivious else "–",
            adaptive.psnr.format(db=True) if adaptive else "–", verdict.verdict,
        ))
    print(markdown_table(rows, ("defense", "oblivious PSNR dB", "adaptive PSNR dB", "verdict")))
    print(outcome.describe())


if __name__ == "__main__":
    main()
