"""Distributed discrete Gaussian (Kairouz et al. 2021): sampler, rounding, grid points, secure sum."""

import math

import numpy as np
import pytest
import torch

from gradleak.defenses import ClientContext, build_defense, build_stack
from gradleak.defenses.discrete_gaussian import conditional_round, rounded_sensitivity, sample, tau
from gradleak.defenses.secagg.fixedpoint import FixedPoint
from gradleak.errors import GradleakError
from gradleak.federated import noise_generator, run_round, split_clients
from gradleak.models import build
from gradleak.threat import Normalization

DISCRETE = "dp-distributed:clients=4,discrete=true,accountant=rdp"


@pytest.mark.parametrize("sigma", [0.8, 3.0])
def test_sampler_follows_the_discrete_gaussian_pmf(sigma):
    draws = sample(400_000, sigma, np.random.default_rng(0))
    support = np.arange(-int(6 * sigma) - 1, int(6 * sigma) + 2)
    pmf = np.exp(-(support**2) / (2 * sigma**2))
    pmf /= pmf.sum()
    observed = np.array([(draws == z).mean() for z in support])
    assert np.abs(observed - pmf).max() < 0.003
    assert draws.dtype == np.int64


def test_conditional_rounding_meets_its_bound_and_stays_unbiased():
    grid = FixedPoint(clip=8.0, value_bits=12)
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000)
    x *= 1.0 / np.linalg.norm(x)  # clipped to C = 1
    bound = rounded_sensitivity(1.0 / grid.step, x.size)
    draws = np.stack([conditional_round(x, grid, bound, rng) for _ in range(200)])
    assert (np.linalg.norm(draws, axis=1) <= bound).all()
    assert bound < 1.0 / grid.step + math.sqrt(x.size)  # tighter than the worst case
    assert np.abs(draws.mean(0) * grid.step - x).max() < 4 * grid.step / math.sqrt(200)


def test_uploads_are_grid_points_carrying_their_share_of_the_noise():
    sigma, n = 2.0, 4
    defense = build_defense(f"{DISCRETE},noise_multiplier={sigma},value_bits=16")
    grid = FixedPoint(8.0, 16)
    zero = (torch.zeros(100, 50, dtype=torch.float64),)
    uploads = [defense.on_upload(zero, ClientContext(k, 1, noise_generator(k))) for k in range(n)]
    units = [u[0].numpy() / grid.step for u in uploads]
    assert all(np.allclose(q, np.round(q), atol=1e-6) for q in units)  # exactly on the grid
    delta = rounded_sensitivity(1.0 / grid.step, 5000)
    total = sum(np.round(q) for q in units)  # rounding zero is exact: what is left is noise
    assert total.std() == pytest.approx(defense.sigma * delta, rel=0.03)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_secure_aggregation_on_the_same_grid_sums_the_uploads(dtype):
    stack = build_stack([f"{DISCRETE},noise_multiplier=1,value_bits=16", "secagg:value_bits=16"])
    defense, secagg = stack.defenses
    step = FixedPoint(8.0, 16).step
    generator = noise_generator(0)
    raw = [(torch.randn(300, 20, generator=torch.Generator().manual_seed(k), dtype=dtype),) for k in range(4)]
    uploads = [defense.on_upload(u, ClientContext(k, 2, generator)) for k, u in enumerate(raw)]
    aggregation = secagg.aggregate(uploads, [2, 2, 2, 2], generator)
    gap = (aggregation.aggregate[0].double() - sum(u[0].double() for u in uploads) / 4).abs() / (step / 4)
    if dtype is torch.float64:
        assert gap.max() < 1e-6  # grid points go through secure aggregation's encoding unchanged
    else:  # float32 holds k * step only to k * 2^-24 steps, so the encoder re-rounds a rare entry by one step
        assert gap.max() < 1 + 1e-3 and (gap > 1e-3).float().mean() < 2e-3


def test_accounting_covers_the_tau_slack_and_refuses_a_coarse_grid():
    defense = build_defense(f"{DISCRETE},epsilon=3")
    assert defense.epsilon() <= 3.0 and defense.epsilon() == pytest.approx(3.0, rel=0.01)
    assert defense.sigma > defense.accounted_sigma  # the extra noise pays for tau
    assert tau(1.0, 10) > 1e-4 > tau(2.0, 10)
    few = build_defense("dp-distributed:clients=100,discrete=true,accountant=rdp,noise_multiplier=0.3,value_bits=4")
    with pytest.raises(GradleakError, match="raise value_bits"):
        few.on_upload((torch.zeros(3),), ClientContext(0, 1, noise_generator(0)))


@pytest.mark.parametrize(
    "extra, message",
    [(",accountant=pld", "accountant=rdp"), (",sample_rate=0.5", "sample_rate=1"), (",clip=9", "grid_range"),
     (",value_bits=1", "value_bits")],
)
def test_discrete_settings_are_checked(extra, message):
    spec = "dp-distributed:clients=4,discrete=true,noise_multiplier=1,accountant=rdp" + extra
    with pytest.raises(GradleakError, match=message):
        build_stack([spec])


def test_dropouts_under_secure_aggregation_leave_too_little_noise():
    model = build("lenet-zhu", (3, 16, 16), 10, seed=0)
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    clients = split_clients(images, torch.arange(8) % 10, 8)
    norm = Normalization((0.5,) * 3, (0.5,) * 3)
    stack = build_stack(["dp-distributed:noise_multiplier=1,clients=8", "secagg:dropout=0.25"])
    with pytest.raises(GradleakError, match="only 6 took part"):
        run_round(model, norm, clients, 10, defenses=stack, noise_seed=0)
    covered = build_stack(["dp-distributed:noise_multiplier=1,clients=8,honest_fraction=0.75", "secagg:dropout=0.25"])
    round_ = run_round(model, norm, clients, 10, defenses=covered, noise_seed=0)
    assert round_.view.aggregate and round_.view.cohort_size == 6
