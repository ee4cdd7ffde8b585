"""Join/leave differencing: how exact the difference is, iDLG on it, and the rare-class test with
and without DP (docs/lab/differencing.md).

    .venv/bin/python benchmarks/differencing.py [--trials 200]

Rows: each defense, with the other clients repeating their data between the rounds (``exact``)
or training on fresh examples (``fresh``). Rare-class correctness is over balanced trials (chance
50%) with exact 95% Clopper-Pearson intervals; DP rows give ε per release and composed over the two
rounds by the PLD accountant.
"""

from __future__ import annotations

import argparse
import time

import torch

from gradleak.attacks import build_attack
from gradleak.attacks.differencing import difference
from gradleak.defenses import DefenseStack, build_defense, build_stack
from gradleak.defenses.accounting import compute_epsilon
from gradleak.defenses.secagg.aggregator import SecureAggregation
from gradleak.eval.differencing import rare_class_trials
from gradleak.eval.metrics import score
from gradleak.eval.summary import markdown_table
from gradleak.scenario import Scenario
from gradleak.scenario import build_join_session

DEFENSES = {
    "secagg": ("secagg",),
    "dp-fedavg ε=1 + secagg": ("dp-fedavg:epsilon=1", "secagg"),
    "dp-distributed ε=1 + secagg": ("dp-distributed:epsilon=1,clients=7", "secagg"),
}


def composed(specs: tuple[str, ...]) -> str:
    """ε per release and over the two releases (same σ, composed by the accountant)."""
    for spec in specs:
        defense = build_defense(spec)
        if defense.epsilon() is not None:
            c = defense.config
            sigma = getattr(defense, "accounted_sigma", c.sigma)
            return f"{defense.epsilon():.2f} / {compute_epsilon(sigma, c.sample_rate, 2 * c.steps, c.delta, c.accountant):.2f}"
    return "∞"


def fixed_point_error(spec: str) -> float:
    """The largest gap between the difference and the joiner's upload, in grid steps."""
    s = build_join_session(Scenario(dataset="faces", cohort_size=8), build_stack([spec]), noise_seed=1)
    update, _, _ = difference(*s.releases)
    view = s.rounds[-1].view
    true = s.clients[0].upload(view.model, view.normalization, view.local, DefenseStack(), torch.Generator())
    step = SecureAggregation().encoder(sum(s.releases[-1].weights)).step
    return max(float((u - t.double()).abs().max()) for u, t in zip(update, true)) / step


def idlg_psnr(specs: tuple[str, ...], fresh: bool) -> float:
    s = build_join_session(Scenario(dataset="faces", cohort_size=8), build_stack(specs), noise_seed=3, fresh=fresh)
    return score(build_attack("differencing:inner=idlg,iterations=2000").reconstruct(s.view), s.truth).mean_psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    print(f"difference vs the joiner's upload (faces, cohort 8, secagg), max error in grid steps: "
          f"rounding seed repeated {fixed_point_error('secagg:seed=0'):.1f}, fresh rounding {fixed_point_error('secagg'):.1f}")
    rows = []
    for name, specs in DEFENSES.items():
        for fresh in (False, True):
            label, model = rare_class_trials(args.trials, specs, fresh)
            rows.append((name, "fresh" if fresh else "exact", composed(specs), f"{idlg_psnr(specs, fresh):.1f}",
                         label.format(), model.format()))
            print(rows[-1], flush=True)
    print(markdown_table(rows, ("defense", "others between rounds", "ε per release / both rounds",
                                "iDLG PSNR dB (faces)", "rare class by label signal", "rare class by model recognition")))
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
