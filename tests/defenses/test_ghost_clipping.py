"""Book-keeping ghost clipping gives DP-SGD's per-example (vmap) clipped sum, exactly."""

import pytest
import torch
from torch import nn

from gradleak.defenses import build_defense
from gradleak.defenses.dp_sgd import clipped_sum, per_example_gradients
from gradleak.defenses.ghost_clipping import NotExact, book_keeping_clipped_sum, clipped_gradient_sum
from gradleak.errors import GradleakError
from gradleak.federated import noise_generator, trainable_names
from gradleak.models import build

MODELS = {  # spec, input shape; small inputs keep the vmap reference fast
    "lenet-zhu": ("lenet-zhu", (3, 32, 32)),
    "convnet-gn": ("convnet:width=4,norm=group", (3, 32, 32)),
    "resnet18-gn": ("resnet18:norm=group", (3, 16, 16)),
    "mlp": ("mlp:hidden=32/16", (1, 8, 8)),
}


def setup(model_name, size, dtype=torch.float64, seed=0):
    spec, shape = MODELS[model_name]
    model = build(spec, shape, 10, seed=seed).to(dtype)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(size, *shape, generator=generator, dtype=dtype)
    y = torch.randint(10, (size,), generator=generator)
    return model, {n: p.detach().clone() for n, p in model.named_parameters()}, x, y


def assert_same_sum(got, ref, rtol):
    """Each tensor within ``rtol`` of its own norm (a floor of 1e-9 of the whole, for zero-gradient biases)."""
    assert got.keys() == ref.keys()
    whole = torch.sqrt(sum(r.square().sum() for r in ref.values()))
    for name in ref:
        error = (got[name] - ref[name]).norm()
        assert error <= rtol * ref[name].norm() + 1e-9 * whole, (name, float(error), float(ref[name].norm()))


def clips(norms):
    """Clip bounds below every norm, above every norm, and (for B >= 3) between two of them, well clear of both."""
    ordered = norms.sort().values
    bounds = {"all clipped": 0.5 * float(ordered[0]), "none clipped": 2.0 * float(ordered[-1])}
    if len(ordered) >= 3:
        gaps = ordered[1:] / ordered[:-1]
        k = int(gaps.argmax())
        if gaps[k] > 1.05:  # a bound 2.5% from the nearest norm is no knife edge
            bounds["some clipped"] = float((ordered[k] * ordered[k + 1]).sqrt())
    return bounds


CASES = [(m, s) for m in MODELS for s in (1, 3, 8) if (m, s) != ("resnet18-gn", 8)]
CASES.append(pytest.param("resnet18-gn", 8, marks=pytest.mark.slow))  # ~4 s of vmap reference


@pytest.mark.parametrize(("model_name", "size"), CASES)
def test_clipped_sum_equals_the_per_example_reference(model_name, size):
    model, params, x, y = setup(model_name, size)
    per_example = per_example_gradients(model, params, x, y)
    norms = torch.sqrt(sum(g.flatten(1).square().sum(1) for g in per_example.values()))
    for regime, clip in clips(norms).items():
        got = book_keeping_clipped_sum(model, params, x, y, clip)
        assert_same_sum(got, clipped_sum(per_example, clip), rtol=1e-5)
        assert list(got) == trainable_names(model), regime


def test_float32_agrees_with_the_reference():
    model, params, x, y = setup("resnet18-gn", 3, torch.float32)
    for clip in (1e-3, 1e3):
        ref = clipped_sum(per_example_gradients(model, params, x, y), clip)
        assert_same_sum(book_keeping_clipped_sum(model, params, x, y, clip), ref, rtol=1e-3)


@pytest.mark.parametrize("model_name", ["lenet-zhu", "mlp"])
def test_dp_sgd_fast_and_vmap_agree_on_poisson_lots_including_empty_ones(model_name):
    model, params, x, y = setup(model_name, 3)
    # q = 0.3 over 3 examples: a third of the lots are empty, the rest hold one to three examples.
    fast, vmap = (build_defense(f"dp-sgd:noise_multiplier=0,clip=0.5,sample_rate=0.3,clipping={c}") for c in ("fast", "vmap"))
    sizes = {"empty": 0, "not empty": 0}
    for seed in range(12):
        got = dict(zip(trainable_names(model), fast.step_gradient(model, params, x, y, noise_generator(seed))))
        ref = dict(zip(trainable_names(model), vmap.step_gradient(model, params, x, y, noise_generator(seed))))
        assert_same_sum(got, ref, rtol=1e-5)
        sizes["empty" if all((g == 0).all() for g in got.values()) else "not empty"] += 1
    assert sizes["empty"] and sizes["not empty"], sizes  # both kinds of lot were exercised


def test_an_empty_lot_releases_the_same_pure_noise_either_way():
    model, params, x, y = setup("mlp", 3)
    empty = next(s for s in range(50) if all(
        (g == 0).all() for g in build_defense("dp-sgd:noise_multiplier=0,sample_rate=0.05").step_gradient(
            model, params, x, y, noise_generator(s))
    ))
    released = [
        torch.cat([g.flatten() for g in build_defense(f"dp-sgd:noise_multiplier=1,sample_rate=0.05,clipping={c}")
                   .step_gradient(model, params, x, y, noise_generator(empty))])
        for c in ("fast", "vmap")
    ]
    torch.testing.assert_close(released[0], released[1], rtol=0, atol=0)
    assert released[0].std() > 1.0  # sigma C / (q B) = 1 / 0.15: noise, not zeros


class _Unruled(nn.Module):
    """A Linear, then a BatchNorm1d in eval mode: per-example, but with no norm rule here."""

    def __init__(self):
        super().__init__()
        self.fc, self.bn, self.out = nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Linear(8, 10)

    def forward(self, x):
        return self.out(self.bn(self.fc(x.flatten(1))))


class _Reused(nn.Module):
    """One Linear called twice: its per-example gradient mixes two calls, which the rules do not cover."""

    def __init__(self):
        super().__init__()
        self.fc, self.out = nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        return self.out(self.fc(torch.sigmoid(self.fc(x.flatten(1)))))


@pytest.mark.parametrize("make", [_Unruled, _Reused])
def test_models_outside_the_rules_fall_back_to_vmap(make):
    torch.manual_seed(0)
    model = make().double().eval()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = torch.rand(4, 1, 8, 8, dtype=torch.float64), torch.arange(4)
    with pytest.raises(NotExact):
        book_keeping_clipped_sum(model, params, x, y, 0.1)
    ref = clipped_sum(per_example_gradients(model, params, x, y), 0.1)
    assert_same_sum(clipped_gradient_sum(model, params, x, y, 0.1, "fast"), ref, rtol=1e-12)


def test_clipping_is_fast_by_default_and_checked():
    assert build_defense("dp-sgd:noise_multiplier=1").config.clipping == "fast"
    with pytest.raises(GradleakError, match="clipping"):
        build_defense("dp-sgd:noise_multiplier=1,clipping=ghost")


@pytest.mark.parametrize("block", [1 << 18, 1200])  # all examples in one block, and blocks of two or three
def test_conv_shapes_match_the_reference(monkeypatch, block):
    """Strides, dilation, padding and kernels that differ per axis, and no bias, through the patch gather."""
    monkeypatch.setattr("gradleak.defenses.ghost_clipping.BLOCK_FLOATS", block)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 5, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), bias=False), nn.Sigmoid(),
        nn.Conv2d(5, 3, 3, stride=2, padding=0), nn.Flatten(), nn.LazyLinear(10),
    ).double()
    x, y = torch.rand(5, 2, 9, 7, dtype=torch.float64), torch.arange(5)
    model(x)  # materialises the lazy Linear
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    per_example = per_example_gradients(model, params, x, y)
    norms = torch.sqrt(sum(g.flatten(1).square().sum(1) for g in per_example.values()))
    for clip in clips(norms).values():
        assert_same_sum(book_keeping_clipped_sum(model, params, x, y, clip), clipped_sum(per_example, clip), rtol=1e-10)


def test_a_result_outlives_the_next_call():
    """The per-thread scratch memory is reused by the next call; what a call returned must not change."""
    model, params, x, y = setup("lenet-zhu", 8)
    book_keeping_clipped_sum(model, params, x, y, 0.1)  # the scratch grows to fit, so the calls below share it
    first = book_keeping_clipped_sum(model, params, x, y, 0.1)
    kept = {n: g.clone() for n, g in first.items()}
    other, other_params, x2, y2 = setup("lenet-zhu", 3, seed=1)
    book_keeping_clipped_sum(other, other_params, x2, y2, 10.0)
    for name in kept:
        torch.testing.assert_close(first[name], kept[name], rtol=0, atol=0)
