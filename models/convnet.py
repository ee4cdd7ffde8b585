"""The ConvNet of Inverting Gradients.

Geiping, Bauermeister, Droege, Moeller, "Inverting Gradients -- How easy is it to break
privacy in federated learning?", NeurIPS 2020, Sec. 5: eight 3x3 convolutions with widths
(1, 2, 2, 4, 4, 4, 4, 4) x ``width``, each followed by a normalisation and ReLU, a 3x3
max-pool after the sixth and the eighth, then one linear layer. The paper uses BatchNorm;
GroupNorm is offered because per-example DP clipping cannot use batch statistics.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from gradleak.models.lenet import MAX_WIDTH
from gradleak.models.norm import norm_layer
from gradleak.spec import Range

_WIDTHS = (1, 2, 2, 4, 4, 4, 4, 4)
_POOL_AFTER = (5, 7)


class ConvNet(nn.Module):
    def __init__(
        self,
        in_shape: tuple[int, int, int],
        num_classes: int,
        width: Annotated[int, Range(1, MAX_WIDTH // 4)] = 64,  # IG: width 64 for CIFAR-10
        norm: str = "batch",  # IG: BatchNorm; "group" for DP-SGD
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_shape[0]
        for index, factor in enumerate(_WIDTHS):
            out = factor * width
            layers += [nn.Conv2d(channels, out, 3, padding=1), norm_layer(norm, out), nn.ReLU()]
            if index in _POOL_AFTER:
                layers.append(nn.MaxPool2d(3))
            channels = out
        layers.append(nn.Flatten())
        self.body = nn.Sequential(*layers)
        with torch.no_grad():
            features = self.body.eval()(torch.zeros(1, *in_shape)).shape[1]
        self.body.train()
        self.fc = nn.Linear(features, num_classes)  # 36 * width for 32x32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))
