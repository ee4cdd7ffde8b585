"""LeNet-Zhu, the victim network of DLG.

Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019: three 5x5 convolutions with
12 channels (strides 2, 2, 1, padding 2), each followed by a sigmoid, and one linear layer.
Sigmoid (not ReLU) matters: gradient matching differentiates the gradient again, and a
non-zero second derivative keeps that signal alive. The paper draws every weight and bias
from U(-0.5, 0.5).
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from gradleak.spec import Range


# Channels (or units) per layer a spec may ask for: 4,096 keeps one layer's weights under a GB.
MAX_WIDTH = 4096


class LeNetZhu(nn.Module):
    def __init__(
        self,
        in_shape: tuple[int, int, int],
        num_classes: int,
        width: Annotated[int, Range(1, MAX_WIDTH)] = 12,  # DLG: 12 channels
        init: str = "uniform",  # DLG: U(-0.5, 0.5); "default" keeps PyTorch's init
    ) -> None:
        super().__init__()
        channels, height, width_px = in_shape
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(width, width, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(width, width, kernel_size=5, padding=2, stride=1),
            nn.Sigmoid(),
            nn.Flatten(),
        )
        with torch.no_grad():
            features = self.body(torch.zeros(1, channels, height, width_px)).shape[1]
        self.fc = nn.Linear(features, num_classes)  # 768 -> classes for 32x32
        if init == "uniform":
            for parameter in self.parameters():
                nn.init.uniform_(parameter, -0.5, 0.5)
        elif init != "default":
            raise ValueError(f"init must be 'uniform' or 'default', not {init!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))
