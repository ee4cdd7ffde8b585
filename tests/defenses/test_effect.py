"""DP noise stops DLG on LeNet-Zhu and one photo; without it the same attack recovers the photo."""

import pytest

from gradleak.attacks import build_attack
from gradleak.defenses import build_stack
from gradleak.eval.metrics import score
from gradleak.scenario import Scenario, build_round

# DLG's L-BFGS with iDLG's label rule and one start: the fast configuration of
# benchmarks/dp_effect.toml, strong enough to invert the undefended gradient.
ATTACK = "dlg:iterations=1000,restarts=1,labels=idlg"


def psnr_under(defense: str, attack: str = ATTACK) -> float:
    round_ = build_round(Scenario(dataset="photos", model="lenet-zhu"), build_stack([defense]), noise_seed=0)
    return score(build_attack(attack).reconstruct(round_.view), round_.truth).summary()["psnr"]


def test_dp_sgd_noise_makes_dlg_fail_where_it_succeeds_without():
    # 2026-12-01, oneDNN on and off: start 11.3 dB, clean 33.3, private 10.9 (below the start).
    start = psnr_under("none", "dlg:iterations=1,restarts=1,labels=idlg")  # the random start the search leaves
    clean = psnr_under("none")
    private = psnr_under("dp-sgd:epsilon=8,clip=1,delta=1e-5")
    assert clean > start + 15  # recognisable
    assert private < start + 3 and private < clean - 15  # noise at a real epsilon: no better than the start
