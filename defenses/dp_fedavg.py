"""Client-level DP: DP-FedAvg (McMahan, Ramage, Talwar, Zhang, "Learning Differentially Private
Recurrent Language Models", ICLR 2018, Algorithm 1 with the flat clip).

- On each client (stage ``client``): clip the whole update to L2 norm ``C``,
  ``Delta_k <- Delta_k * min(1, C / ||Delta_k||)``.
- On the server (stage ``server``): add ``N(0, sigma^2 C^2 I)`` to the sum of the clipped
  updates and divide by the *expected* cohort size ``qN`` (``clients``), McMahan et al.'s fixed
  denominator ``qW``: ``Delta~ = (sum_k Delta_k + N(0, sigma^2 C^2 I)) / (q N)``. Dividing by the
  realised cohort K instead would scale the release by a data-dependent count and shrink its
  noise in large rounds. With ``sample_rate = 1`` everyone takes part and K is the expected size.

The guarantee is at the client level (adding or removing one client's whole data), accounted
over the Poisson client sampling rate ``q`` (``sample_rate``; cohorts must be drawn that way,
e.g. by :func:`gradleak.federated.poisson_cohort`) and the number of rounds (``steps``).

Sensitivity: one clipped update moves the sum by at most ``C``. The round's aggregate is the
example-weighted mean, which equals sum / K only when clients hold equally many examples (as
:func:`gradleak.federated.split_clients` and scenarios make them); with unequal sizes a large
client's weight exceeds 1/K and the noise below would under-protect it.

Threat model: this is *central* DP. The noise is added after aggregation, so an
honest-but-curious server has already seen every clipped, un-noised update: DP-FedAvg protects
against whoever receives the released model, not against the server. Against the server, use
distributed DP under secure aggregation (``dp-distributed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch

from gradleak.defenses import register
from gradleak.defenses.accounting import DPSettings, PlantedBug, bug_noise_scale
from gradleak.defenses.base import ClientContext, Defense, Stage, Update
from gradleak.defenses.gaussian import add_noise, clip_update
from gradleak.errors import GradleakError
from gradleak.spec import Range


@dataclass(frozen=True)
class DPFedAvgConfig(DPSettings):
    clients: Annotated[float | None, Range(0, 1e9, low_open=True)] = None  # qN, the expected cohort the noised sum is divided by; None: everyone (q = 1)
    planted_bug: PlantedBug = "none"  # for audits of broken mechanisms only: a tenth of the accounted noise, or no clipping

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.clients is None and self.sample_rate < 1:
            raise GradleakError(
                f"dp-fedavg samples clients at rate {self.sample_rate}, so it needs clients= (the expected "
                "cohort size q N, the population times the rate) to divide the noised sum by"
            )
        if self.clients is not None and not self.clients > 0:
            raise GradleakError(f"clients (the expected cohort size) must be positive, not {self.clients}")


@register
class DPFedAvg(Defense):
    """Clip each client's update to C; the server noises the sum with N(0, sigma^2 C^2), divided by qN."""

    name = "dp-fedavg"
    stage = "client"
    stages: ClassVar[tuple[Stage, ...]] = ("client", "server")
    Config: ClassVar[type] = DPFedAvgConfig

    def __init__(self, config: DPFedAvgConfig | None = None) -> None:
        super().__init__(config)
        self.sigma = self.config.sigma

    def on_upload(self, update: Update, context: ClientContext) -> Update:
        return update if self.config.planted_bug == "no-clip" else clip_update(update, self.config.clip)

    def on_aggregate(self, aggregate: Update, num_clients: int, generator: torch.Generator) -> Update:
        """``aggregate`` is the mean over the ``num_clients`` realised; release (sum + noise) / qN."""
        expected = self.config.clients if self.config.clients is not None else num_clients
        summed = tuple(t * num_clients for t in aggregate)
        return tuple(t / expected for t in add_noise(summed, self.sigma * self.config.clip * bug_noise_scale(self.config.planted_bug), generator))

    def release_scale(self, num_clients: int) -> float:
        """The mean of ``num_clients`` is released as their sum over qN."""
        return num_clients / (self.config.clients if self.config.clients is not None else num_clients)

    def epsilon(self) -> float:
        return self.config.achieved_epsilon()
