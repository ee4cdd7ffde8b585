"""A fully connected network (the simplest victim; its first layer leaks inputs exactly)."""

from __future__ import annotations

import math
from typing import Annotated

from torch import nn

from gradleak.models.lenet import MAX_WIDTH
from gradleak.spec import Range

_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class MLP(nn.Module):
    def __init__(
        self,
        in_shape: tuple[int, int, int],
        num_classes: int,
        hidden: tuple[Annotated[int, Range(1, MAX_WIDTH)], ...] = (256, 256),
        activation: str = "sigmoid",  # twice differentiable everywhere, like LeNet-Zhu
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, not {activation!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        features = math.prod(in_shape)
        for size in hidden:
            layers += [nn.Linear(features, size), _ACTIVATIONS[activation]()]
            features = size
        layers.append(nn.Linear(features, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
