"""Inverting Gradients, FedAvg inversion and GradInversion: short budgets, real outcomes."""

import pytest
import torch

from gradleak.attacks import build_attack
from gradleak.errors import GradleakError
from gradleak.eval.metrics import score


def test_inverting_gradients_on_a_face(make_round):
    # The CPU backend moves signed Adam's path: 36.0 dB with ATen's convolutions, 37.1 with
    # oneDNN's (at 300 iterations 30.0 and 32.0, too close to the bar).
    round_ = make_round(dataset="faces", index=0)
    reconstruction = build_attack("ig:iterations=500").reconstruct(round_.view)
    scores = score(reconstruction, round_.truth)
    assert scores.mean_psnr >= 30 and scores.label_accuracy == 1.0


def test_unrolling_fedavg_beats_treating_the_delta_as_a_gradient(make_round):
    """Two faces, five steps on mini-batches of one (faces 0, 1, 0, 1, 0): 23.4 against 17.1 dB at
    500 iterations with ATen's convolutions, 24.5 against 16.5-16.8 with oneDNN's, 21.4 unrolled on
    a 2-core AVX-512 EPYC (at 300 iterations the unrolled attack reached only 20.9 with ATen). With
    one image the two are within a dB of each other and the sign of the difference changes with the backend."""
    round_ = make_round(dataset="faces", batch_size=2, algorithm="fedavg", local_steps=5, learning_rate=0.1,
                        local_batch_size=1, known_labels=True)
    unrolled = score(build_attack("fedavg:iterations=500,labels=known").reconstruct(round_.view), round_.truth)
    naive = score(build_attack("fedavg:iterations=500,labels=known,unroll=false").reconstruct(round_.view), round_.truth)
    assert unrolled.mean_psnr >= naive.mean_psnr + 3
    assert unrolled.mean_psnr >= 18


def test_gradinversion_uses_the_batchnorm_prior_on_a_batch(make_round):
    round_ = make_round(dataset="photos", model="convnet:width=4", batch_size=3, distinct_labels=True)
    start = build_attack("gradinversion:iterations=1,group=2").reconstruct(round_.view)
    reconstruction = build_attack("gradinversion:iterations=30,group=2").reconstruct(round_.view)
    assert reconstruction.images.shape == round_.truth.images.shape
    assert reconstruction.info["bn_prior"] and reconstruction.info["starts"] == 2
    assert sorted(reconstruction.labels.tolist()) == sorted(round_.truth.labels.tolist())
    # The objective with its BatchNorm prior falls by more than half in 30 steps (2,093 -> 852 with
    # oneDNN on and off, 2026-12-01). The PSNR does not rise at a test's budget (9.5 -> 9.3 dB), so it is not asserted.
    assert reconstruction.info["loss"] < 0.6 * start.info["loss"]


def test_combining_the_starts_by_their_mean(make_round):
    round_ = make_round(dataset="photos", model="convnet:width=4", model_mode="eval")
    best = build_attack("ig:iterations=20,restarts=3").reconstruct(round_.view)
    mean = build_attack("ig:iterations=20,restarts=3,combine=mean").reconstruct(round_.view)
    assert best.info["best_start"] in (0, 1, 2) and mean.info["best_start"] == -1
    # The same three starts, so the mean differs from the chosen one but stays in the valid range,
    # and their errors partly cancel: 10.6 against 9.5 dB for the lowest-loss start (oneDNN on and off, 2026-12-01).
    assert not torch.equal(mean.images, best.images)
    assert 0 <= float(mean.images.min()) and float(mean.images.max()) <= 1
    assert score(mean, round_.truth).mean_psnr >= score(best, round_.truth).mean_psnr + 0.5
    with pytest.raises(GradleakError, match="choose one of: best, mean"):
        build_attack("ig:iterations=20,combine=median").reconstruct(round_.view)
