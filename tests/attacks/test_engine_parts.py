"""Objectives, priors and the many-problem mode, each against a value worked out by hand."""

import pytest
import torch
from torch import nn

from gradleak.attacks.dlg import DLG
from gradleak.attacks.many import ManySettings, reconstruct_many
from gradleak.attacks.objectives import cosine_distance, relative_errors, squared_l2
from gradleak.attacks.priors import BatchNormStatistics, group_consistency, total_variation
from gradleak.errors import GradleakError
from gradleak.eval.metrics import psnr


def test_objectives():
    a = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    b = [torch.tensor([1.0, 0.0]), torch.tensor([[1.0]])]
    assert float(squared_l2(a, b)) == 8.0
    assert float(squared_l2(a, b, [1.0, 0.5])) == 6.0
    assert float(cosine_distance(a, [2 * t for t in a])) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine_distance(a, [-t for t in a])) == pytest.approx(2.0)
    assert relative_errors(a, b).tolist() == [4.0, 4.0]


def test_priors():
    flat = torch.full((2, 3, 8, 8), 0.3)
    assert float(total_variation(flat)) == 0.0
    stripes = torch.zeros(1, 1, 4, 4)
    stripes[..., ::2] = 1.0  # every horizontal neighbour differs by 1, no vertical one
    assert float(total_variation(stripes)) == 1.0
    same = torch.ones(3, 2, 1, 4, 4)
    assert float(group_consistency(same)) == 0.0
    assert float(group_consistency(torch.stack([torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)]))) == pytest.approx(1.0)


def test_batchnorm_prior_is_zero_on_data_with_the_running_statistics():
    layer = nn.BatchNorm2d(2)
    layer.running_mean.copy_(torch.tensor([1.0, -1.0]))
    layer.running_var.copy_(torch.tensor([4.0, 0.25]))
    prior = BatchNormStatistics(nn.Sequential(layer))
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(64, 2, 8, 8, generator=generator)
    data = (data - data.mean((0, 2, 3), keepdim=True)) / data.std((0, 2, 3), unbiased=False, keepdim=True)
    data = data * torch.tensor([2.0, 0.5]).view(1, 2, 1, 1) + torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)
    prior.start()
    layer(data)
    assert float(prior.penalty()) == pytest.approx(0.0, abs=1e-5)
    prior.start()
    layer(data + 1.0)  # both means off by one: distance sqrt(2)
    assert float(prior.penalty()) == pytest.approx(2**0.5, abs=1e-4)


def test_many_problems_at_once(make_round):
    rounds = [make_round(dataset="faces", index=i, model_seed=1) for i in (3, 4, 5)]
    reconstructions = reconstruct_many([r.view for r in rounds], DLG.Config(), ManySettings(slots=2))
    for reconstruction, round_ in zip(reconstructions, rounds):
        assert psnr(reconstruction.images[0], round_.truth.images[0]) >= 40
        assert reconstruction.labels.tolist() == round_.truth.labels.tolist()
    other = make_round(dataset="faces", index=3, model_seed=2)
    with pytest.raises(GradleakError, match="same global model"):
        reconstruct_many([rounds[0].view, other.view])


def test_best_keeps_the_earliest_of_the_lowest_scores():
    from gradleak.attacks.matching import Best

    best = Best()
    built = []
    for score, point in ((3.0, "a"), (float("nan"), "b"), (1.0, "c"), (1.0, "d"), (2.0, "e")):
        best.offer(score, lambda point=point: built.append(point) or point)
    assert (best.point, best.score) == ("c", 1.0)
    assert built == ["a", "c"]  # a point is built only when kept; NaN never beats a held point
    held = Best("start", float("inf"))
    assert not held.offer(float("nan"), lambda: "x") and held.point == "start"
