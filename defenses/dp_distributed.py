"""Distributed DP: every client adds its share of the noise, so only the (secure) sum is private.

Central DP (:mod:`~gradleak.defenses.dp_fedavg`) trusts the server with clean updates. Here
each of the ``n`` clients of a round clips its update to L2 norm ``C`` and adds
``N(0, sigma^2 C^2 / (h n))`` itself before upload. Gaussians add up: the sum of ``n`` uploads
carries ``N(0, sigma^2 C^2 / h)``, at least the ``N(0, sigma^2 C^2)`` that central DP-FedAvg
adds, as long as ``h n`` clients really add their share. Under secure aggregation (Bonawitz et
al. 2017) the server learns only that sum, so no party ever holds an un-noised aggregate, and
the accountant's (epsilon, delta) holds against the server too (Kairouz, Liu, Steinke,
"The Distributed Discrete Gaussian Mechanism for Federated Learning with Secure Aggregation",
ICML 2021, Sec. 3, in its continuous form).

Assumptions the guarantee rests on:

- secure aggregation is in the stack; without it the server sees each upload, which carries
  only ``1 / sqrt(h n)`` of the noise (:meth:`DistributedDP.upload_epsilon` is that weaker
  guarantee);
- ``honest_fraction`` ``h``: at least ``h n`` clients add their noise (the others may be
  colluding with the server and add none); the per-client share is scaled up by ``1 / h``;
- dropouts: a client that drops after masking never adds its noise; with ``k`` of ``n``
  clients surviving the sum carries ``k / (h n)`` of the target variance, so ``h`` must also
  cover the expected dropout rate;
- continuous noise is an idealisation: secure aggregation sums integers modulo 2^b, and
  rounding a noised float to the grid is post-processing of each upload, not of the sum;
- the grid must hold the noise: a clipped update has every coordinate within ``C``, and its
  noise exceeds ``k`` share standard deviations with probability ``2 Phi(-k)``; with
  :data:`TAIL_PROBABILITY` = 1e-9 per coordinate, :attr:`DistributedDP.upload_range`
  ``= C + k sigma C / sqrt(h n)`` (k = 6.1), and the round widens ``secagg``'s ``clip`` to it
  (:func:`gradleak.federated.sized_aggregator`). A fixed range of 8 once clipped 69% of the
  noised coordinates at a small epsilon, releasing a third of the noise the accountant assumed.

``discrete=true`` is Kairouz et al.'s mechanism itself (:mod:`~gradleak.defenses.discrete_gaussian`):
each client puts its clipped update on secure aggregation's integer grid by conditional
randomized rounding, whose L2 bound ``Delta`` (grid units) replaces ``C / gamma``, and adds
discrete Gaussian noise ``N_Z(0, sigma^2 Delta^2 / (h n))``. The upload is then exactly a grid
point, so the ``secagg`` aggregator encodes it without rounding again, provided both use the same
grid: give ``secagg`` the same ``clip`` (here ``grid_range``), ``value_bits`` and ``bits``. (With
float32 updates a grid point ``k * step`` is stored to within ``k * 2^-24`` steps, so the encoder's
stochastic rounding moves about that fraction of entries by one step; float64 updates are exact.)
Accounting is by concentrated DP (their Thm. 1), so it uses the RDP accountant, without
sampling amplification (``sample_rate=1``); each upload checks that the ``tau`` term costs at
most :data:`TAU_SLACK` of the privacy budget, and sigma carries that slack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np
import torch
from scipy import stats

from gradleak.defenses import discrete_gaussian, noise, register
from gradleak.defenses.accounting import DPSettings, compute_epsilon
from gradleak.defenses.base import ClientContext, Defense, Stage, Update
from gradleak.defenses.gaussian import add_noise, clip_update
from gradleak.defenses.secagg.aggregator import flatten, unflatten
from gradleak.defenses.secagg.fixedpoint import MAX_BITS, MAX_VALUE_BITS, FixedPoint
from gradleak.errors import GradleakError
from gradleak.spec import MAX_CLIENTS, Range

# The discrete mechanism's zCDP parameter may exceed the Gaussian's 1 / (2 sigma^2) by this
# fraction (tau's share); sigma is scaled by sqrt(1 + TAU_SLACK) to pay for it.
TAU_SLACK = 1e-3
# Per coordinate, the probability that a continuous noise share leaves the secure-aggregation range.
TAIL_PROBABILITY = 1e-9


@dataclass(frozen=True)
class DistributedConfig(DPSettings):
    clients: Annotated[int | None, Range(1, MAX_CLIENTS)] = None  # n: the cohort the noise is split over (public in FL)
    honest_fraction: Annotated[float, Range(0, 1, low_open=True)] = 1.0  # h: Kairouz et al. 2021 scale the local noise by 1/h
    discrete: bool = False  # Kairouz et al.'s discrete Gaussian on secure aggregation's grid
    grid_range: Annotated[float, Range(0, None, low_open=True)] = 8.0  # discrete: secagg's per-coordinate clip (SecAggConfig.clip's default)
    value_bits: Annotated[int, Range(2, MAX_VALUE_BITS)] = 20  # discrete: secagg's value_bits; grid step grid_range / (2^(value_bits-1) - 1)
    bits: Annotated[int, Range(1, MAX_BITS)] = 32  # discrete: secagg's ring Z_{2^bits}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.discrete:
            if self.accountant != "rdp" or self.sample_rate != 1:
                raise GradleakError(
                    "discrete distributed DP is accounted by concentrated DP (Kairouz et al. 2021) without "
                    "sampling amplification: set accountant=rdp and leave sample_rate=1"
                )
            if self.clip > self.grid_range:
                raise GradleakError(f"clip={self.clip} exceeds grid_range={self.grid_range}; the grid must hold the update")
            FixedPoint(self.grid_range, self.value_bits, self.bits)  # checks the grid
        if self.clients is None or self.clients < 1:
            raise GradleakError(
                f"dp-distributed needs clients= (the number of clients n whose noise shares add up), "
                f"a positive whole number, not {self.clients}"
            )
        if not 0 < self.honest_fraction <= 1:
            raise GradleakError(f"honest_fraction must be in (0, 1], not {self.honest_fraction}")

    @property
    def noisy_clients(self) -> float:
        """h n: how many clients' noise the guarantee counts on."""
        return self.honest_fraction * self.clients


@register
class DistributedDP(Defense):
    """Each client clips to C and adds N(0, sigma^2 C^2 / (h n)); the (secure) sum carries sigma C."""

    name = "dp-distributed"
    stage = "client"
    # The server-stage hook only checks that enough clients took part; it adds nothing.
    stages: ClassVar[tuple[Stage, ...]] = ("client", "server")
    Config: ClassVar[type] = DistributedConfig
    fixed_cohort: ClassVar[bool] = True  # the n noise shares must all be in the sum: no Poisson cohorts

    def __init__(self, config: DistributedConfig | None = None) -> None:
        super().__init__(config)
        slack = math.sqrt(1 + TAU_SLACK) if self.config.discrete else 1.0
        # The noise multiplier the accountant sees; the discrete mechanism adds a factor sqrt(1 + TAU_SLACK).
        self.accounted_sigma = self.config.sigma if self.config.epsilon is not None else self.config.sigma / slack
        self.sigma = self.accounted_sigma * slack

    @property
    def share_std(self) -> float:
        """The standard deviation of the noise one client adds, in the update's units (continuous)."""
        return self.sigma * self.config.clip / math.sqrt(self.config.noisy_clients)

    @property
    def upload_range(self) -> float | None:
        """Continuous: the per-coordinate bound ``C + k share_std`` an upload exceeds with probability
        at most :data:`TAIL_PROBABILITY`, which secure aggregation's range must hold. Discrete: None
        (the upload is a point of the declared grid, checked against ``grid_range``)."""
        if self.config.discrete:
            return None
        return self.config.clip + float(stats.norm.isf(TAIL_PROBABILITY / 2)) * self.share_std

    def on_upload(self, update: Update, context: ClientContext) -> Update:
        clipped = clip_update(update, self.config.clip)
        if not self.config.discrete:
            return add_noise(clipped, self.share_std, context.generator)
        return unflatten(self.discrete_upload(flatten(clipped), noise.numpy_rng(context.generator)), update)

    def discrete_upload(self, x: np.ndarray, rng: np.random.Generator | noise.NumpyStream) -> np.ndarray:
        """Conditional rounding to the grid plus N_Z(0, sigma^2 Delta^2 / (h n)), as grid points in x's units."""
        c = self.config
        grid = FixedPoint(c.grid_range, c.value_bits, c.bits)
        delta = discrete_gaussian.rounded_sensitivity(c.clip / grid.step, x.size)
        share = self.sigma * delta / math.sqrt(c.noisy_clients)
        parties = math.ceil(c.noisy_clients)
        # Thm. 1: eps^2 <= 1 / sigma^2 + tau d / 2, which must stay within the accounted 1 / sigma_acc^2.
        budget = 1 / self.accounted_sigma**2 - 1 / self.sigma**2 if self.sigma > 0 else math.inf
        if discrete_gaussian.tau(share, parties) * x.size / 2 > budget:
            raise GradleakError(
                f"each client's discrete noise is only {share:.2g} grid steps, too coarse for the sum of "
                f"{parties} to act as one discrete Gaussian; raise value_bits (a finer grid)"
            )
        noised = discrete_gaussian.conditional_round(x, grid, delta, rng) + discrete_gaussian.sample(x.size, share, rng)
        if np.abs(noised).max() > grid.levels:
            raise GradleakError(
                f"noise carries an upload past the grid's range +-{c.grid_range}, where secure aggregation "
                f"would clip it; raise grid_range (and secagg's clip with it)"
            )
        return noised * grid.step

    def on_aggregate(self, aggregate: Update, num_clients: int, generator: torch.Generator) -> Update:
        if num_clients < self.config.noisy_clients:
            raise GradleakError(
                f"dp-distributed splits the noise over clients={self.config.clients} (honest fraction "
                f"{self.config.honest_fraction}) but only {num_clients} took part, so the sum carries "
                f"less noise than the declared epsilon needs; declare clients={num_clients}, or an "
                f"honest_fraction low enough to cover the dropouts"
            )
        return aggregate

    def epsilon(self) -> float:
        """The guarantee of the sum (what secure aggregation reveals)."""
        c = self.config
        return compute_epsilon(self.accounted_sigma, c.sample_rate, c.steps, c.delta, c.accountant)

    def upload_epsilon(self) -> float:
        """The much weaker guarantee of one upload, which is what a server without secure aggregation sees."""
        c = self.config
        one = self.accounted_sigma / math.sqrt(c.noisy_clients)
        return compute_epsilon(one, c.sample_rate, c.steps, c.delta, c.accountant)
