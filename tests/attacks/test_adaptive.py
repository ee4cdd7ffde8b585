"""Defense-aware matching: the truth is a zero of the adaptive loss, and the attack beats the oblivious one."""

from __future__ import annotations

import pytest
import torch

from gradleak.attacks import build_attack
from gradleak.attacks.adaptive import PULL, observations
from gradleak.attacks.matching import GradientMatching
from gradleak.defenses import build_stack
from gradleak.errors import GradleakError
from gradleak.eval.metrics import psnr
from gradleak.scenario import Scenario, build_round

FACE = Scenario(dataset="faces", model="lenet-zhu")


def defended(*specs: str, scenario: Scenario = FACE):
    return build_round(scenario, build_stack(specs))


def loss_at_truth(round_, adaptive: bool) -> float:
    """The matching loss at the victim's own image and label: what a perfect reconstruction scores."""
    view = round_.view
    observed = observations(view)[0] if adaptive else None
    problem = GradientMatching(view, labels=round_.truth.labels, dtype=torch.float64, observations=observed)
    images = view.normalization.normalize(round_.truth.images).to(torch.float64)
    return float(problem.evaluate(images).loss.detach())


@pytest.mark.parametrize("defense", ["prune:ratio=0.9", "soteria:ratio=0.8"])
def test_the_truth_is_a_zero_of_the_adaptive_loss_but_not_of_the_oblivious_one(defense):
    round_ = defended(defense)
    oblivious, adaptive = loss_at_truth(round_, False), loss_at_truth(round_, True)
    assert oblivious > 1e-3
    assert adaptive < 1e-9 * oblivious  # only float32 rounding of the observed update is left


def test_inside_every_quantiser_bin_only_the_pull_remains():
    round_ = defended("quantize:bits=4")
    oblivious, adaptive = loss_at_truth(round_, False), loss_at_truth(round_, True)
    # the true gradient lies inside the bin of every observed entry: its residual shrinks to PULL of itself
    assert oblivious > 1e-3
    assert adaptive == pytest.approx(PULL**2 * oblivious, rel=1e-6)


def test_only_the_defenses_the_view_names_are_modelled():
    assert observations(defended("dp-sgd:noise_multiplier=1e-5,clip=100").view) == (None, {"adaptive_to": "nothing"})
    assert observations(defended().view)[0] is None
    # a mean of quantised uploads is on no client's grid: quantisation under aggregation is left alone
    cohort = defended("quantize:bits=4", "secagg", scenario=Scenario(dataset="faces", cohort_size=3))
    assert cohort.view.aggregate
    assert observations(cohort.view)[0] is None
    _, info = observations(defended("prune:ratio=0.5", "quantize:bits=4").view)
    assert info == {"adaptive_to": "prune:ratio=0.5; quantize:bits=4"}


def test_a_mask_cannot_be_compiled_away():
    view = defended("prune:ratio=0.9").view
    with pytest.raises(GradleakError, match="defense-aware"):
        GradientMatching(view, labels=torch.tensor([0]), compile=True, observations=observations(view)[0])


def attack_psnr(round_, spec: str) -> float:
    reconstruction = build_attack(spec).reconstruct(round_.view)
    return psnr(reconstruction.images[0], round_.truth.images[0])


def test_the_adaptive_attack_recovers_a_face_behind_soteria():
    round_ = defended("soteria:ratio=0.8")
    budget = "idlg:iterations=600,restarts=1"
    oblivious, adaptive = attack_psnr(round_, budget), attack_psnr(round_, budget + ",adaptive=true")
    # measured: 7.3 dB oblivious, 57.7 dB adaptive (solved after ~500 evaluations)
    assert oblivious < 20 < 35 < adaptive


@pytest.mark.slow
@pytest.mark.parametrize("defense, floor", [("prune:ratio=0.5", 35.0), ("prune:ratio=0.9", 17.0)])
def test_the_adaptive_attack_recovers_a_face_behind_pruning(defense, floor):
    round_ = defended(defense)
    budget = "idlg:iterations=2000,restarts=2"
    oblivious, adaptive = attack_psnr(round_, budget), attack_psnr(round_, budget + ",adaptive=true")
    # measured: 16.2 / 53.6 dB under prune 0.5, 6.2 / 20.2 dB under prune 0.9
    assert oblivious < 20 and adaptive > max(floor, oblivious + 10)


@pytest.mark.slow
@pytest.mark.parametrize(
    "defense", ["prune:ratio=0.7", "prune:ratio=0.9", "quantize:bits=3", "quantize:bits=4", "quantize:bits=6"]
)
def test_the_adaptive_attack_is_never_worse(defense):
    round_ = defended(defense)
    budget = "idlg:iterations=2000,restarts=2"
    oblivious, adaptive = attack_psnr(round_, budget), attack_psnr(round_, budget + ",adaptive=true")
    assert adaptive >= oblivious - 2.0
