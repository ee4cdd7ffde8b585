"""Any torchvision classification network by name (``torchvision:NAME``), untrained.

Weights are never downloaded. Grey inputs are repeated to three channels in front of the
network (parameter-free, so the gradient an attacker sees is the network's own).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from gradleak.errors import GradleakError


class RepeatChannels(nn.Module):
    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat(1, self.times, 1, 1)


def torchvision_model(name: str, in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise GradleakError(
            f"torchvision has no classification model {name!r}; choose one of: {', '.join(available)}"
        )
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    channels = in_shape[0]
    if channels == 1:
        model = nn.Sequential(RepeatChannels(3), model)
    elif channels != 3:
        raise GradleakError(f"torchvision:{name} takes 1- or 3-channel images, not {channels}")
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(2, *in_shape))
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise GradleakError(
            f"torchvision:{name} does not accept inputs of shape {tuple(in_shape)} ({exc}); "
            "choose a larger --image-size or another model"
        ) from None
    return model.train()
