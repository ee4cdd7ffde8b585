"""Every registered victim network builds, and gradient matching can differentiate it twice."""

import pytest
import torch
from torch import nn

from gradleak.errors import GradleakError
from gradleak.models import MODELS, build, check_twice_differentiable

ALL = [*MODELS.names(), "torchvision:resnet18", "convnet:width=8,norm=group", "resnet20:norm=group"]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", ALL)
def test_builds_and_is_twice_differentiable(name, channels):
    model = build(name, (channels, 32, 32), 10, seed=0)
    assert model(torch.rand(2, channels, 32, 32)).shape == (2, 10)
    check_twice_differentiable(model, (channels, 32, 32), 10)


def test_lenet_zhu_is_the_dlg_network():
    model = build("lenet-zhu", (3, 32, 32), 10, seed=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (3, 12, (5, 5), (2, 2), (2, 2)),
        (12, 12, (5, 5), (2, 2), (2, 2)),
        (12, 12, (5, 5), (1, 1), (2, 2)),
    ]
    assert sum(isinstance(m, nn.Sigmoid) for m in model.modules()) == 3
    assert model.fc.in_features == 768
    weights = torch.cat([p.flatten() for p in model.parameters()])
    assert weights.min() >= -0.5 and weights.max() <= 0.5 and weights.std() > 0.25  # U(-0.5, 0.5)


def test_seed_makes_weights_reproducible_without_touching_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build("convnet:width=4", (3, 32, 32), 10, seed=7)
    after = torch.rand(1)
    b = build("convnet:width=4", (3, 32, 32), 10, seed=7)
    assert torch.equal(before, after)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_convnet_options_and_norms():
    model = build("convnet:width=8,norm=group", (3, 32, 32), 10)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.fc.in_features == 36 * 8  # two 3x3 max-pools: 32 -> 10 -> 3


class OnceOnly(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.square()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class Square(nn.Module):
    def forward(self, x):
        return OnceOnly.apply(x)


def test_non_twice_differentiable_module_is_named():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), Square(), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    with pytest.raises(GradleakError, match=r"module '1' \(Square\) cannot be differentiated twice"):
        check_twice_differentiable(model, (1, 32, 32), 10)


@pytest.mark.parametrize(
    "name, message",
    [
        ("lenet", "unknown model 'lenet'; choose one of: convnet, lenet-zhu"),
        ("convnet:depth=3", "unknown key\\(s\\) depth for model 'convnet'; valid keys: norm, width"),
        ("convnet:norm=layer", "norm must be 'batch', 'group' or 'none'"),
        ("torchvision:nonet", "torchvision has no classification model 'nonet'"),
        ("mlp:hidden=abc", "hidden='abc' for model 'mlp' is not a valid int"),
    ],
)
def test_bad_model_specs_are_clear_errors(name, message):
    with pytest.raises(GradleakError, match=message):
        build(name, (3, 32, 32), 10)
