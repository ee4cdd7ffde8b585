"""The distributed discrete Gaussian's parts: sampler, conditional rounding, sensitivity, tau.

Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian Mechanism for Federated Learning with
Secure Aggregation", ICML 2021. Secure aggregation sums integers, so each client puts its clipped
update on an integer grid (step ``gamma``) and adds integer noise there:

- conditional randomized rounding: round each coordinate up or down at random (unbiased), and
  redraw until the rounded vector's L2 norm is at most ``Delta`` (their Sec. 4.1), where, in grid
  units with ``a = C / gamma`` and ``d`` coordinates,
  ``Delta^2 = min(a^2 + d/4 + sqrt(2 ln(1/beta)) (a + sqrt(d)/2), (a + sqrt(d))^2)``; a draw meets
  it with probability at least ``1 - beta``;
- discrete Gaussian noise ``N_Z(0, s^2)``, ``P(z) ~ exp(-z^2 / (2 s^2))`` on the integers, sampled
  by Canonne, Kamath, Steinke ("The Discrete Gaussian for Differential Privacy", NeurIPS 2020,
  Alg. 3): discrete Laplace proposals, accepted with probability ``exp(-(|y| - s^2/t)^2 / (2 s^2))``;
- the sum of ``m`` such noises is not exactly a discrete Gaussian; their Thm. 1 bounds the gap by
  ``tau = 10 sum_{k=1}^{m-1} exp(-2 pi^2 s^2 k / (k+1))``: the sum of the m clients' noise gives
  (1/2) eps^2-concentrated DP with ``eps^2 = Delta^2 / (m s^2) + tau d / 2``.

The sampler's bits come from ``rng``: the CSPRNG stream of :func:`gradleak.defenses.noise.numpy_rng`
in a private round, a seeded numpy generator in an experiment. Its acceptance probabilities are
floating point: right in distribution, not hardened against timing side channels.
"""

from __future__ import annotations

import math

import numpy as np

from gradleak.defenses.noise import NumpyStream
from gradleak.defenses.secagg.fixedpoint import FixedPoint
from gradleak.errors import GradleakError

BETA = math.exp(-0.5)  # Kairouz et al. 2021, Sec. 5: the rounding bound's failure probability
MAX_ROUNDING_TRIES = 1000  # each try meets the bound with probability >= 1 - beta ~ 0.39


def sample(size: int, sigma: float, rng: np.random.Generator | NumpyStream) -> np.ndarray:
    """``size`` independent draws of the discrete Gaussian N_Z(0, sigma^2) as int64."""
    if sigma == 0:
        return np.zeros(size, dtype=np.int64)
    t = math.floor(sigma) + 1
    out = np.empty(size, dtype=np.int64)
    pending = np.arange(size)
    while pending.size:
        p = 1 - math.exp(-1 / t)  # discrete Laplace(t) = difference of two geometric counts of failures
        y = rng.geometric(p, pending.size) - rng.geometric(p, pending.size)
        accept = rng.random(pending.size) < np.exp(-((np.abs(y) - sigma**2 / t) ** 2) / (2 * sigma**2))
        out[pending[accept]] = y[accept]
        pending = pending[~accept]
    return out


def rounded_sensitivity(clip_units: float, dim: int, beta: float = BETA) -> float:
    """Delta: the L2 bound conditional rounding enforces on a vector of norm <= ``clip_units`` (grid units)."""
    a, d = clip_units, dim
    high_probability = a**2 + d / 4 + math.sqrt(2 * math.log(1 / beta)) * (a + math.sqrt(d) / 2)
    return math.sqrt(min(high_probability, (a + math.sqrt(d)) ** 2))


def conditional_round(
    x: np.ndarray, grid: FixedPoint, bound: float, rng: np.random.Generator | NumpyStream
) -> np.ndarray:
    """Stochastically round ``x`` (in the input's units) to ``grid``, redrawn until ``||q||_2 <= bound``."""
    for _ in range(MAX_ROUNDING_TRIES):
        q = grid.quantize(x, rng)
        if np.linalg.norm(q.astype(np.float64)) <= bound:
            return q
    raise GradleakError(f"conditional rounding failed {MAX_ROUNDING_TRIES} times; is the update clipped?")


def tau(sigma: float, parties: int) -> float:
    """Kairouz et al.'s gap between a sum of ``parties`` N_Z(0, sigma^2) and one N_Z(0, parties sigma^2)."""
    return 10 * sum(math.exp(-2 * math.pi**2 * sigma**2 * k / (k + 1)) for k in range(1, parties))
