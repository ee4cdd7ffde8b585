"""DP noise stops DLG on LeNet-Zhu and one photo; without it the same attack recovers the photo."""

import pytest

from gradleak.attacks import build_attack
from gradleak.defenses import build_stack
from gradleak.eval.metrics import score
from gradleak.scenario import Scenario, build_round

# DLG's L-BFGS with iDLG's label rule and one start: the fast configuration of
# benchmarks/dp_effect.toml, strong enough to invert the undefended gradient.
ATTACK = "dlg:iterations=1000,restarts=1,labels=idlg"


def psnr_under(defense: str) -> float:
    round_ = build_round(Scenario(dataset="photos", model="lenet-zhu"), build_stack([defense]), noise_seed=0)
    return score(build_attack(ATTACK).reconstruct(round_.view), round_.truth).summary()["psnr"]


def test_dp_sgd_noise_makes_dlg_fail_where_it_succeeds_without():
    clean = psnr_under("none")
    private = psnr_under("dp-sgd:epsilon=8,clip=1,delta=1e-5")
    assert clean > 20  # recognisable
    assert private < 12 and private < clean - 10  # noise at a real epsilon: nothing left
