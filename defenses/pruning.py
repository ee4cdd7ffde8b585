"""Gradient pruning: each tensor of the update keeps only its largest-magnitude entries.

Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019, Sec. 5 (gradient compression):
zero the fraction ``ratio`` of entries with the smallest absolute value, per tensor, before
upload. They report that DLG on LeNet-Zhu stops recovering recognisable images above about
20% sparsity; Huang et al. (NeurIPS 2021) find ratios around 0.9 and above are needed against
stronger attacks on trained networks. Pruning is no privacy guarantee, only a measured effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from gradleak.defenses import register
from gradleak.defenses.base import ClientContext, Defense, Update
from gradleak.errors import GradleakError
from gradleak.spec import Range


def prune(tensor: torch.Tensor, ratio: float) -> torch.Tensor:
    """``tensor`` with its ``floor(ratio * numel)`` smallest-magnitude entries set to zero."""
    dropped = int(ratio * tensor.numel())
    if dropped == 0:
        return tensor
    kept = torch.topk(tensor.abs().flatten(), tensor.numel() - dropped).indices
    mask = torch.zeros(tensor.numel(), dtype=torch.bool, device=tensor.device)
    mask[kept] = True
    return tensor * mask.view_as(tensor)


@register
class Pruning(Defense):
    name = "prune"
    stage = "client"

    @dataclass(frozen=True)
    class Config:
        ratio: Annotated[float, Range(0, 1, high_open=True)] = 0.9  # fraction zeroed per tensor; within the range Huang et al. evaluate

        def __post_init__(self) -> None:
            if not 0 <= self.ratio < 1:
                raise GradleakError(f"prune ratio must be in [0, 1) (the fraction of entries zeroed), not {self.ratio}")

    def on_upload(self, update: Update, context: ClientContext) -> Update:
        return tuple(prune(t, self.config.ratio) for t in update)
