"""Where DP noise comes from: a CSPRNG by default, a seed only when asked (and then said), snapped output."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from gradleak.defenses import build_stack, discrete_gaussian, noise
from gradleak.defenses.gaussian import add_noise
from gradleak.federated import noise_generator, run_round, split_clients
from gradleak.models import build
from gradleak.threat import Normalization

SHAPE = (1, 8, 8)
NORM = Normalization((0.5,), (0.5,))
N = 200_000


def flat(tensors):
    return torch.cat([t.flatten() for t in tensors]).double()


def one_round(seed=None):
    model = build("mlp:hidden=16", SHAPE, 10, seed=0)
    images = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(0))
    stack = build_stack(["dp-fedavg:noise_multiplier=1,clip=1"])
    return run_round(model, NORM, split_clients(images, torch.arange(4), 2), 10, defenses=stack, noise_seed=seed)


def test_rounds_without_a_seed_draw_fresh_noise_and_say_so():
    first, second = one_round(), one_round()
    assert not first.noise_seeded and not second.noise_seeded
    assert not torch.equal(flat(first.released), flat(second.released))
    seeded, again = one_round(seed=5), one_round(seed=5)
    assert seeded.noise_seeded and again.noise_seeded  # reproducible, so not private, and the result says so
    assert torch.equal(flat(seeded.released), flat(again.released))


def test_the_csprng_gaussian_is_standard_normal():
    z = noise.standard_normal(N, noise.PrivateGenerator()).numpy()
    # Each bound is 6 standard errors (two-sided, < 2e-9 by chance); the KS test fails by chance with p 1e-7.
    assert abs(z.mean()) < 6 / math.sqrt(N)
    assert abs(z.var() - 1) < 6 * math.sqrt(2 / N)
    assert abs(stats.kurtosis(z)) < 6 * math.sqrt(24 / N)  # Box-Muller's tails are the normal's
    assert stats.kstest(z, "norm").pvalue > 1e-7


def test_the_csprng_uniforms_are_uniform_and_the_discrete_sampler_uses_them():
    generator = noise.PrivateGenerator()
    u = noise.uniform(N, generator).numpy()
    assert 0 < u.min() and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-7  # false failure 1e-7
    draws = discrete_gaussian.sample(N, 3.0, noise.NumpyStream(generator))
    # N_Z(0, 9) has variance 9 to within 1e-70; its sample variance has standard error ~ 9 sqrt(2 / N).
    assert abs(draws.var() - 9) < 6 * 9 * math.sqrt(2 / N)
    assert isinstance(noise.numpy_rng(generator), noise.NumpyStream)
    assert isinstance(noise.numpy_rng(noise_generator(0)), np.random.Generator)


def test_private_noise_does_not_come_from_torchs_generators():
    draws = []
    for _ in range(2):
        generator = noise_generator()
        generator.manual_seed(0)  # the same torch state twice, global and the generator's own
        torch.manual_seed(0)
        draws.append(flat(add_noise((torch.zeros(1000),), 1.0, generator)))
    assert noise.is_private(generator)
    assert not torch.equal(draws[0], draws[1])


@pytest.mark.parametrize("std", [1e-3, 0.7, 40.0])
def test_released_values_lie_on_the_snapping_grid(std):
    # Mironov 2012: the support of fl(x + Z) depends on x; snapped, it is Lambda Z whatever x is.
    grid = noise.snap_step(std)
    assert grid <= std * 2.0**-noise.SNAP_BITS and math.log2(grid).is_integer()
    x = (torch.full((5000,), 0.1234567, dtype=torch.float64) + 1e-9 * torch.arange(5000),)
    released = flat(add_noise(x, std, noise.PrivateGenerator()))
    steps = released / grid
    assert torch.equal(steps, torch.round(steps))
    assert (released - x[0]).std().item() == pytest.approx(std, rel=6 * math.sqrt(2 / 5000))  # 6 s.e.


def test_a_seeded_generator_is_reproducible_and_not_private():
    a, b = noise_generator(3), noise_generator(3)
    assert not noise.is_private(a)
    assert torch.equal(flat(add_noise((torch.zeros(100),), 1.0, a)), flat(add_noise((torch.zeros(100),), 1.0, b)))
