"""Soteria removes the first FC layer's most invertible representation features, and nothing else."""

import pytest
import torch
from torch import nn

from gradleak.defenses import build_defense
from gradleak.defenses.soteria import feature_scores
from gradleak.errors import GradleakError
from gradleak.federated import batch_gradient, noise_generator
from gradleak.models import build


def setup(device="cpu"):
    model = build("lenet-zhu", (3, 16, 16), 10, seed=0).to(device)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    return model, params, torch.rand(2, 3, 16, 16, generator=generator).to(device), torch.tensor([1, 2], device=device)


def test_scores_are_representation_norm_over_input_sensitivity():
    model, params, x, _ = setup()
    scores = feature_scores(model, params, x)
    inputs = x.clone().requires_grad_(True)
    features = []
    handle = model.fc.register_forward_hook(lambda module, args, output: features.append(args[0]))
    model(inputs)
    handle.remove()
    for f in (0, 17, 191):
        (sensitivity,) = torch.autograd.grad(features[0][:, f].sum(), inputs, retain_graph=True)
        assert float(scores[f]) == pytest.approx(float(features[0][:, f].detach().norm() / sensitivity.norm()), rel=1e-4)


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.8])
def test_removes_the_lowest_scoring_columns_of_the_first_fc_layer_only(ratio, device):
    model, params, x, y = setup(device)
    defended = build_defense(f"soteria:ratio={ratio}").step_gradient(model, params, x, y, noise_generator(0, device))
    plain = batch_gradient(model, params, x, y)
    fc = [n for n, _ in model.named_parameters()].index("fc.weight")
    zeroed = (defended[fc] == 0).all(0)
    assert int(zeroed.sum()) == int(ratio * 192)
    scores = feature_scores(model, params, x)
    if zeroed.any():
        assert scores[zeroed].max() <= scores[~zeroed].min()
    torch.testing.assert_close(defended[fc][:, ~zeroed], plain[fc][:, ~zeroed])
    for index, (a, b) in enumerate(zip(defended, plain)):
        if index != fc:
            torch.testing.assert_close(a, b)


def test_needs_a_linear_layer_and_a_valid_ratio():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    params = {n: p.detach() for n, p in model.named_parameters()}
    x, y = torch.rand(1, 3, 4, 4), torch.zeros(1, 16)
    with pytest.raises(GradleakError, match="no nn.Linear"):
        build_defense("soteria").step_gradient(model, params, x, y, noise_generator(0))
    with pytest.raises(GradleakError, match="ratio='1' for defense 'soteria' is out of range"):
        build_defense("soteria:ratio=1")
