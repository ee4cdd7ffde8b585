"""Metrics agree with hand computation; Hungarian matching undoes any permutation."""

import json
import math

import pytest
import torch

from gradleak.eval.metrics import format_db, jsonable, label_accuracy, match, mse, psnr, score, ssim
from gradleak.threat import Reconstruction, Truth


def test_psnr_and_mse_by_hand():
    truth = torch.zeros(3, 8, 8)
    guess = torch.full((3, 8, 8), 0.1)
    assert mse(guess, truth) == pytest.approx(0.01)
    assert psnr(guess, truth) == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    half = truth.clone()
    half[:, :4] = 0.5  # MSE = 0.5 * 0.25 = 0.125
    assert psnr(half, truth) == pytest.approx(10 * math.log10(1 / 0.125))


def test_identical_images():
    image = torch.rand(1, 16, 16)
    assert psnr(image, image) == math.inf
    assert ssim(image, image) == pytest.approx(1.0)
    assert format_db(math.inf) == "inf" and format_db(23.456) == "23.5"
    encoded = json.dumps(jsonable({"psnr": math.inf, "list": [1.0, -math.inf, math.nan]}))
    assert json.loads(encoded) == {"psnr": "inf", "list": [1.0, "-inf", "nan"]}
    assert float(json.loads(encoded)["psnr"]) == math.inf


def test_ssim_drops_with_noise():
    torch.manual_seed(0)
    image = torch.rand(3, 32, 32)
    noisy = (image + 0.3 * torch.randn_like(image)).clamp(0, 1)
    assert ssim(noisy, image) < 0.9


def test_label_accuracy():
    assert label_accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == 0.75
    assert label_accuracy(None, torch.tensor([1])) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_hungarian_matching_recovers_a_random_permutation(seed):
    generator = torch.Generator().manual_seed(seed)
    truth = torch.rand(8, 3, 16, 16, generator=generator)
    perm = torch.randperm(8, generator=generator)
    noisy = (truth[perm] + 0.05 * torch.randn(8, 3, 16, 16, generator=generator)).clamp(0, 1)
    order = match(noisy, truth)
    assert [int(perm[o]) for o in order] == list(range(8))


def test_score_matches_before_scoring_and_penalises_missing_images():
    truth = Truth(images=torch.rand(3, 1, 8, 8), labels=torch.tensor([0, 1, 2]))
    swapped = Reconstruction(images=truth.images[[2, 0, 1]], labels=torch.tensor([2, 0, 1]))
    scores = score(swapped, truth)
    assert scores.psnr == [math.inf] * 3 and scores.label_accuracy == 1.0 and scores.order == [1, 2, 0]
    partial = score(Reconstruction(images=truth.images[:1], labels=torch.tensor([0])), truth)
    assert partial.psnr[0] == math.inf and partial.order[1:] == [-1, -1]
    assert max(partial.psnr[1:]) < 15 and partial.label_accuracy == pytest.approx(1 / 3)
    assert partial.success_rate(20.0) == pytest.approx(1 / 3)
