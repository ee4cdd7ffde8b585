"""DP-SGD: exact per-example gradients, clipped to C, noise of standard deviation sigma C on the sum."""

import pytest
import torch
from scipy import stats

from gradleak.defenses import build_defense, build_stack, dp_sgd, noise
from gradleak.defenses.dp_sgd import clipped_sum, per_example_gradients
from gradleak.errors import GradleakError
from gradleak.federated import Client, batch_gradient, loss_fn, noise_generator, run_round, trainable_names
from gradleak.models import build
from gradleak.threat import LocalTraining, Normalization

SHAPE = (3, 16, 16)
NORM = Normalization((0.5,) * 3, (0.5,) * 3)


def batch(size, shape=SHAPE, seed=0, device="cpu"):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(size, *shape, generator=generator).to(device), (torch.arange(size) % 10).to(device)


def params_of(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_per_example_gradients_are_each_examples_own_gradient():
    model = build("lenet-zhu", SHAPE, 10, seed=0)
    x, y = batch(4)
    per_example = per_example_gradients(model, params_of(model), x, y)
    names = trainable_names(model)
    for i in range(4):
        alone = batch_gradient(model, params_of(model), x[i : i + 1], y[i : i + 1])
        for name, g in zip(names, alone):
            torch.testing.assert_close(per_example[name][i], g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("clip", [0.01, 1.0, 1e3])
def test_every_example_contributes_at_most_clip(clip, device):
    model = build("lenet-zhu", SHAPE, 10, seed=0).to(device)
    x, y = batch(8, device=device)
    per_example = per_example_gradients(model, params_of(model), x, y)
    norms = torch.sqrt(sum(g.flatten(1).square().sum(1) for g in per_example.values()))
    # Each clipped contribution is the clipped sum of a batch made of that example alone.
    for i in range(8):
        alone = clipped_sum({n: g[i : i + 1] for n, g in per_example.items()}, clip)
        norm = float(torch.sqrt(sum(g.square().sum() for g in alone.values())))
        assert norm <= clip
        assert norm == pytest.approx(min(clip, float(norms[i])), rel=1e-4)  # untouched when inside the ball
    if clip == 0.01:
        assert (norms > clip).all()  # the test did exercise clipping


def test_released_noise_has_standard_deviation_sigma_clip(device):
    sigma, clip, size = 2.0, 0.5, 8
    model = build("lenet-zhu", SHAPE, 10, seed=0).to(device)
    x, y = batch(size, device=device)
    defense = build_defense(f"dp-sgd:noise_multiplier={sigma},clip={clip}")
    released = defense.step_gradient(model, params_of(model), x, y, noise_generator(0, device))
    clean = clipped_sum(per_example_gradients(model, params_of(model), x, y), clip)
    names = trainable_names(model)
    # The step returns (clipped sum + noise) / B; what is left after removing the sum is the noise.
    assert all(r.device == x.device for r in released)
    noise = torch.cat([(r * size - clean[n]).flatten() for r, n in zip(released, names)]).double().cpu()
    assert noise.std().item() == pytest.approx(sigma * clip, rel=0.03)
    assert abs(noise.mean().item()) < 4 * sigma * clip / noise.numel() ** 0.5
    assert stats.kstest(noise.numpy() / (sigma * clip), "norm").pvalue > 1e-3


def test_poisson_sampling_keeps_the_expected_lot_scale(device):
    model = build("mlp:hidden=8", (1, 4, 4), 10, seed=0).to(device)
    x, y = batch(400, (1, 4, 4), device=device)
    defense = build_defense("dp-sgd:noise_multiplier=0,clip=100,sample_rate=0.25")
    full = clipped_sum(per_example_gradients(model, params_of(model), x, y), 100.0)
    names = trainable_names(model)
    draws = [defense.step_gradient(model, params_of(model), x, y, noise_generator(seed, device)) for seed in range(200)]
    # Dividing by the expected lot q B makes the step an unbiased estimate of the full mean gradient.
    mean_step = torch.stack([torch.cat([g.flatten() for g in d]) for d in draws]).mean(0)
    full_mean = torch.cat([full[n].flatten() / len(x) for n in names])
    assert torch.linalg.vector_norm(mean_step - full_mean) < 0.1 * torch.linalg.vector_norm(full_mean)
    assert not torch.equal(torch.cat([g.flatten() for g in draws[0]]), torch.cat([g.flatten() for g in draws[1]]))


def test_an_empty_lot_releases_pure_noise():
    model = build("lenet-zhu", SHAPE, 10, seed=0)
    x, y = batch(1)
    defense = build_defense("dp-sgd:noise_multiplier=1,clip=1,sample_rate=0.001")
    generator = noise_generator(3)
    released = defense.step_gradient(model, params_of(model), x, y, generator)
    noise = torch.cat([g.flatten() for g in released]) * 0.001  # expected lot 0.001
    assert noise.std().item() == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize(
    "name", ["lenet-zhu", "mlp", "convnet:width=8,norm=group", "resnet20:norm=group", "resnet18:norm=group"]
)
def test_works_for_every_model_family(name):
    model = build(name, SHAPE, 10, seed=0)
    x, y = batch(2)
    defense = build_defense("dp-sgd:noise_multiplier=1,clip=1")
    update = defense.step_gradient(model, params_of(model), x, y, noise_generator(0))
    assert [tuple(u.shape) for u in update] == [tuple(p.shape) for p in model.parameters() if p.requires_grad]
    assert all(torch.isfinite(u).all() for u in update)


@pytest.mark.parametrize("name", ["convnet:width=8", "resnet20", "torchvision:resnet18"])
def test_batchnorm_in_training_mode_is_refused_with_the_fix(name):
    model = build(name, SHAPE, 10, seed=0).train()
    x, y = batch(2)
    defense = build_defense("dp-sgd:noise_multiplier=1")
    with pytest.raises(GradleakError, match="norm=group"):
        defense.step_gradient(model, params_of(model), x, y, noise_generator(0))


def test_batchnorm_in_eval_mode_is_per_example():
    model = build("convnet:width=8", SHAPE, 10, seed=0).eval()
    x, y = batch(3)
    per_example = per_example_gradients(model, params_of(model), x, y)
    alone = batch_gradient(model, params_of(model), x[1:2], y[1:2])
    for name, g in zip(trainable_names(model), alone):
        torch.testing.assert_close(per_example[name][1], g, rtol=1e-4, atol=1e-6)


def test_without_clipping_or_noise_a_fedavg_round_is_the_plain_one(device):
    model = build("lenet-zhu", SHAPE, 10, seed=0).to(device)
    x, y = batch(8)
    # DP-SGD hands every step the whole local data (its lot is a Poisson sample of it; q = 1: all).
    local = LocalTraining("fedavg", local_steps=4, learning_rate=0.1)
    plain = run_round(model, NORM, [Client(0, x, y)], 10, local=local)
    stack = build_stack(["dp-sgd:noise_multiplier=0,clip=1e6"])
    private = run_round(model, NORM, [Client(0, x, y)], 10, local=local, defenses=stack)
    for a, b in zip(plain.view.update, private.view.update):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    noised = run_round(model, NORM, [Client(0, x, y)], 10, local=local, defenses=build_stack(["dp-sgd:noise_multiplier=1"]))
    assert noised.view.defenses == ("dp-sgd:noise_multiplier=1.0",)
    assert not torch.allclose(noised.view.update[0], plain.view.update[0])


def test_a_step_clips_each_example_as_a_naive_loop_does():
    clip, size = 0.01, 6
    model = build("lenet-zhu", SHAPE, 10, seed=0)
    x, y = batch(size)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # The reference: each example's own gradient by autograd, clipped to C, then summed.
    naive = [torch.zeros_like(p) for p in trainable]
    for i in range(size):
        grads = torch.autograd.grad(loss_fn(model(x[i : i + 1]), y[i : i + 1]), trainable)
        norm = torch.sqrt(sum(g.double().square().sum() for g in grads))
        assert norm > 10 * clip  # every example is clipped, so a clip of the batch sum would differ
        naive = [n + g * float(clip / norm) for n, g in zip(naive, grads)]
    naive_flat = torch.cat([g.flatten() for g in naive]).double()
    names = trainable_names(model)
    summed = clipped_sum(per_example_gradients(model, params_of(model), x, y), clip)
    step = build_defense(f"dp-sgd:noise_multiplier=0,clip={clip}").step_gradient(
        model, params_of(model), x, y, noise_generator(0)
    )
    candidates = (torch.cat([summed[n].flatten() for n in names]), torch.cat([g.flatten() for g in step]) * size)
    for candidate in candidates:
        # 1e-3 of the norm: far above float32 rounding and the 1e-5 clip margin, far below a wrong clip.
        assert torch.linalg.vector_norm(candidate.double() - naive_flat) < 1e-3 * torch.linalg.vector_norm(naive_flat)


@pytest.mark.parametrize("rate", [1.0, 0.5])
def test_removing_one_example_moves_each_steps_clipped_sum_by_at_most_clip(rate, monkeypatch):
    clip, size = 0.01, 12
    model = build("lenet-zhu", SHAPE, 10, seed=0)
    x, y = batch(size)
    # Learning rate 0 keeps every step at the same weights, so steps can be compared one to one;
    # a batch size of 4 would make three consecutive slices if the lots were not over all the data.
    local = LocalTraining("fedavg", local_steps=3, learning_rate=0.0, batch_size=4)
    stack = build_stack([f"dp-sgd:noise_multiplier=0,clip={clip},sample_rate={rate}"])
    sums, coins, replay = [], [], []
    clipped, draw = dp_sgd.clipped_gradient_sum, noise.poisson_mask

    def record_sum(*args):
        out = clipped(*args)
        sums.append(torch.cat([g.flatten() for g in out.values()]).double())
        return out

    def coupled_coins(n, q, generator):  # D's coins again, for the examples D without j still has
        if replay:
            return replay.pop(0)
        coins.append(draw(n, q, generator))
        return coins[-1]

    monkeypatch.setattr(dp_sgd, "clipped_gradient_sum", record_sum)
    monkeypatch.setattr(noise, "poisson_mask", coupled_coins)
    Client(0, x, y).upload(model, NORM, local, stack, noise_generator(0))
    full, full_coins = sums[:], coins[:]
    assert len(full) == 3 and all(len(c) == size for c in full_coins)  # every lot is drawn from all 12
    worst = 0.0
    for j in range(size):
        sums.clear()
        replay[:] = [torch.cat([c[:j], c[j + 1 :]]) for c in full_coins]
        keep = [i for i in range(size) if i != j]
        Client(0, x[keep], y[keep]).upload(model, NORM, local, stack, noise_generator(0))
        worst = max(worst, *(float(torch.linalg.vector_norm(a - b)) for a, b in zip(full, sums)))
    assert worst <= clip * (1 + 1e-4)  # the sensitivity the accountant assumes (float32 sums: ~1e-6)
