"""Client-level DP: DP-FedAvg (McMahan, Ramage, Talwar, Zhang, "Learning Differentially Private
Recurrent Language Models", ICLR 2018, Algorithm 1 with the flat clip).

- On each client (stage ``client``): clip the whole update to L2 norm ``C``,
  ``Delta_k <- Delta_k * min(1, C / ||Delta_k||)``.
- On the server (stage ``server``): add ``N(0, sigma^2 C^2 I)`` to the sum of the clipped
  updates before releasing it. The aggregate here is a mean over the cohort of K clients, so the
  noise added to it is ``N(0, (sigma C / K)^2 I)``.

The guarantee is at the client level (adding or removing one client's whole data), accounted
over the client sampling rate ``q`` (``sample_rate``) and the number of rounds (``steps``).

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

from typing import ClassVar

import torch

from gradleak.defenses import register
from gradleak.defenses.accounting import DPSettings
from gradleak.defenses.base import ClientContext, Defense, Stage, Update
from gradleak.defenses.gaussian import add_noise, clip_update


@register
class DPFedAvg(Defense):
    """Clip each client's update to C; the server noises the aggregate with N(0, sigma^2 C^2) on the sum."""

    name = "dp-fedavg"
    stage = "client"
    stages: ClassVar[tuple[Stage, ...]] = ("client", "server")
    Config: ClassVar[type] = DPSettings

    def __init__(self, config: DPSettings | None = None) -> None:
        super().__init__(config)
        self.sigma = self.config.sigma

    def on_upload(self, update: Update, context: ClientContext) -> Update:
        return clip_update(update, self.config.clip)

    def on_aggregate(self, aggregate: Update, num_clients: int, generator: torch.Generator) -> Update:
        return add_noise(aggregate, self.sigma * self.config.clip / num_clients, generator)

    def epsilon(self) -> float:
        return self.config.achieved_epsilon()
