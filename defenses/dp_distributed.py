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
  rounding a noised float to the grid is post-processing of each upload, not of the sum.
  Kairouz et al. add discrete Gaussian noise on the integer grid instead; the cost is a slightly
  larger sensitivity after rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from gradleak.defenses import register
from gradleak.defenses.accounting import DPSettings, compute_epsilon
from gradleak.defenses.base import ClientContext, Defense, Stage, Update
from gradleak.defenses.gaussian import add_noise, clip_update
from gradleak.errors import GradleakError


@dataclass(frozen=True)
class DistributedConfig(DPSettings):
    clients: int | None = None  # n: the cohort the noise is split over (public in FL)
    honest_fraction: float = 1.0  # h: Kairouz et al. 2021 scale the local noise by 1/h

    def __post_init__(self) -> None:
        super().__post_init__()
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

    def __init__(self, config: DistributedConfig | None = None) -> None:
        super().__init__(config)
        self.sigma = self.config.sigma

    @property
    def share_std(self) -> float:
        """The standard deviation of the noise one client adds, in the update's units."""
        return self.sigma * self.config.clip / math.sqrt(self.config.noisy_clients)

    def on_upload(self, update: Update, context: ClientContext) -> Update:
        return add_noise(clip_update(update, self.config.clip), self.share_std, context.generator)

    def on_aggregate(self, aggregate: Update, num_clients: int, generator: torch.Generator) -> Update:
        if num_clients < self.config.noisy_clients:
            raise GradleakError(
                f"dp-distributed splits the noise over clients={self.config.clients} (honest fraction "
                f"{self.config.honest_fraction}) but only {num_clients} took part, so the sum carries "
                f"less noise than the declared epsilon needs; set clients={num_clients}"
            )
        return aggregate

    def epsilon(self) -> float:
        """The guarantee of the sum (what secure aggregation reveals)."""
        return self.config.achieved_epsilon()

    def upload_epsilon(self) -> float:
        """The much weaker guarantee of one upload, which is what a server without secure aggregation sees."""
        c = self.config
        return compute_epsilon(self.sigma / math.sqrt(c.noisy_clients), c.sample_rate, c.steps, c.delta, c.accountant)
