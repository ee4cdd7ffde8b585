"""DP-FedAvg and distributed DP: client updates clipped to C, noise sigma C on the sum, where it belongs."""

import math

import pytest
import torch

from gradleak.defenses import ClientContext, build_defense, build_stack
from gradleak.defenses.accounting import compute_epsilon
from gradleak.defenses.gaussian import global_norm
from gradleak.errors import GradleakError
from gradleak.federated import noise_generator, poisson_cohort, run_round, split_clients
from gradleak.models import build
from gradleak.threat import Normalization

SHAPE = (3, 16, 16)
NORM = Normalization((0.5,) * 3, (0.5,) * 3)


def update(scale, seed=0, sizes=((40, 30), (30,), (500,))):
    generator = torch.Generator().manual_seed(seed)
    return tuple(scale * torch.randn(size, generator=generator) for size in sizes)


def context(generator):
    return ClientContext(client_id=0, num_examples=1, generator=generator)


def flat(tensors):
    return torch.cat([t.flatten() for t in tensors]).double()


@pytest.mark.parametrize("scale", [1e-3, 1.0, 100.0])
def test_each_client_update_is_clipped_to_c(scale):
    defense = build_defense("dp-fedavg:noise_multiplier=1,clip=2")
    raw = update(scale)
    clipped = defense.on_upload(raw, context(noise_generator(0)))
    assert global_norm(clipped) <= 2.0
    if global_norm(raw) <= 2.0:
        torch.testing.assert_close(flat(clipped), flat(raw))
    else:  # clipping scales, it does not change the direction
        assert torch.nn.functional.cosine_similarity(flat(clipped), flat(raw), dim=0) > 1 - 1e-9


def test_server_noise_is_sigma_c_on_the_sum(device):
    sigma, clip, clients = 1.5, 2.0, 4
    defense = build_defense(f"dp-fedavg:noise_multiplier={sigma},clip={clip}")
    mean = tuple(t.to(device) for t in update(0.0, sizes=((200, 100),)))
    noised = defense.on_aggregate(mean, clients, noise_generator(0, device))
    # The aggregate is the mean over the cohort: noise sigma C on the sum is sigma C / K on the mean.
    assert noised[0].device == mean[0].device
    assert (flat(noised) * clients).std().item() == pytest.approx(sigma * clip, rel=0.03)


def test_the_server_sees_clipped_but_unnoised_uploads(device):
    model = build("lenet-zhu", SHAPE, 10, seed=0).to(device)
    images = torch.rand(8, *SHAPE, generator=torch.Generator().manual_seed(0))
    clients = split_clients(images, torch.arange(8) % 10, 4)
    stack = build_stack(["dp-fedavg:noise_multiplier=1,clip=0.5"])
    round_ = run_round(model, NORM, clients, 10, defenses=stack, noise_seed=0)
    seen = round_.view.update  # central DP: the honest-but-curious server holds this
    assert float(global_norm(seen)) == pytest.approx(0.5, rel=1e-4)  # clipped (LeNet-Zhu's gradients are larger)
    assert not round_.view.aggregate
    released = flat(round_.released)
    assert released.std().item() == pytest.approx(0.5 / 4, rel=0.05)  # noise sigma C / K; the mean itself is ~0


def test_client_level_epsilon_is_the_accountants():
    defense = build_defense("dp-fedavg:noise_multiplier=1.1,sample_rate=0.01,clients=10,steps=1000,delta=1e-6")
    assert defense.epsilon() == compute_epsilon(1.1, 0.01, 1000, 1e-6, "pld")


def test_distributed_shares_add_up_to_the_central_noise(device):
    sigma, clip, n = 2.0, 1.0, 10
    defense = build_defense(f"dp-distributed:noise_multiplier={sigma},clip={clip},clients={n}")
    generator = noise_generator(0, device)
    zero = tuple(t.to(device) for t in update(0.0, sizes=((100, 100),)))
    uploads = [defense.on_upload(zero, context(generator)) for _ in range(n)]
    share = flat(uploads[0]).std().item()
    assert share == pytest.approx(sigma * clip / math.sqrt(n), rel=0.03)
    total = flat(sum(u[0] for u in uploads))
    assert total.std().item() == pytest.approx(sigma * clip, rel=0.03)
    assert defense.epsilon() == pytest.approx(compute_epsilon(sigma, 1.0, 1, 1e-5), rel=1e-9)
    assert defense.upload_epsilon() > 3 * defense.epsilon()  # one upload alone is far less private


def test_distributed_noise_is_scaled_up_for_dishonest_clients():
    defense = build_defense("dp-distributed:noise_multiplier=1,clip=1,clients=10,honest_fraction=0.5")
    uploads = [defense.on_upload(update(0.0, sizes=((100, 100),)), context(noise_generator(s))) for s in range(5)]
    # Only 5 of 10 clients add noise, and their sum alone still carries sigma C.
    assert flat(sum(u[0] for u in uploads)).std().item() == pytest.approx(1.0, rel=0.03)


def test_distributed_clips_and_refuses_a_smaller_cohort_than_declared():
    defense = build_defense("dp-distributed:noise_multiplier=0,clip=1,clients=4")
    assert global_norm(defense.on_upload(update(10.0), context(noise_generator(0)))) <= 1.0
    with pytest.raises(GradleakError, match="only 3 took part"):
        defense.on_aggregate(update(0.0), 3, noise_generator(0))
    with pytest.raises(GradleakError, match="clients="):
        build_defense("dp-distributed:noise_multiplier=1")


def test_cohorts_are_poisson_samples():
    population, rate, rounds = 50, 0.2, 2000
    generator = noise_generator()
    cohorts = [poisson_cohort(population, rate, generator) for _ in range(rounds)]
    sizes = torch.tensor([len(c) for c in cohorts], dtype=torch.float64)
    # Binomial(50, 0.2): mean 10, variance 8 (a fixed-size cohort has variance 0). Bounds at
    # about 6 standard errors: mean s.e. 0.063, variance s.e. ~0.26; false failure < 1e-8.
    assert abs(sizes.mean().item() - 10) < 0.4
    assert 6.4 < sizes.var().item() < 9.6
    frequency = torch.zeros(population)
    for c in cohorts:
        frequency[c] += 1 / rounds
    assert (frequency - rate).abs().max() < 0.06  # each client in with rate q: s.e. 0.009, 50 clients


def test_dp_fedavg_divides_by_the_expected_cohort_not_the_realised_one():
    sigma, clip, realised, expected = 2.0, 1.0, 3, 6
    defense = build_defense(f"dp-fedavg:noise_multiplier={sigma},clip={clip},sample_rate=0.1,clients={expected}")
    mean = (torch.ones(200_000),)  # every realised client uploaded ones: the sum is 3
    released = flat(defense.on_aggregate(mean, realised, noise_generator()))
    # (sum + N(0, sigma^2 C^2)) / qN: mean 0.5, std 1/3; standard errors 7e-4 and 5e-4, bounds > 10x.
    assert released.mean().item() == pytest.approx(realised / expected, abs=0.01)
    assert released.std().item() == pytest.approx(sigma * clip / expected, rel=0.03)
    with pytest.raises(GradleakError, match="clients="):
        build_defense("dp-fedavg:noise_multiplier=1,sample_rate=0.1")


def test_distributed_noise_survives_secure_aggregation():
    # A large sigma makes each share (std 20) far wider than secagg's default range of 8, which once
    # clipped 69% of the coordinates; the round must widen the range so the sum keeps all its noise.
    sigma, clip, n = 40.0, 1.0, 4
    model = build("lenet-zhu", SHAPE, 10, seed=0)
    images = torch.rand(2 * n, *SHAPE, generator=torch.Generator().manual_seed(0))
    stack = build_stack([f"dp-distributed:noise_multiplier={sigma},clip={clip},clients={n}", "secagg"])
    round_ = run_round(model, NORM, split_clients(images, torch.arange(2 * n) % 10, n), 10, defenses=stack)
    released = flat(round_.released)
    assert round_.cost["clipped_fraction"] < 0.01  # none at 1e-9 per coordinate; 69% before
    # The mean of n uploads carries N(0, (sigma C / n)^2); the updates themselves (norm <= C / n in
    # all) and the grid's rounding are negligible. Standard error of the std over 10,066 coordinates:
    # 0.7%, so 5% is 7 standard errors (false failure < 1e-11).
    assert released.std().item() == pytest.approx(sigma * clip / n, rel=0.05)
