"""ResNets with the CIFAR stem (3x3 convolution, stride 1, no max-pool).

- ResNet-18: He et al., CVPR 2016, as used on 32x32 inputs by Inverting Gradients and
  most gradient-inversion papers; torchvision's network with its ImageNet stem swapped.
- ResNet-20: He et al. 2016, Sec. 4.2 (CIFAR): three stages of three basic blocks with
  16, 32, 64 channels; projection shortcuts where the shape changes.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from gradleak.models.norm import norm_layer
from gradleak.spec import Range


def _cifar_stem(channels: int, width: int) -> nn.Conv2d:
    return nn.Conv2d(channels, width, kernel_size=3, stride=1, padding=1, bias=False)


def resnet18(in_shape: tuple[int, int, int], num_classes: int, norm: str = "batch") -> nn.Module:
    model = tv_resnet.resnet18(weights=None, num_classes=num_classes, norm_layer=partial(norm_layer, norm))
    model.conv1 = _cifar_stem(in_shape[0], 64)
    model.maxpool = nn.Identity()
    return model


class ResNet20(nn.Module):
    def __init__(
        self,
        in_shape: tuple[int, int, int],
        num_classes: int,
        norm: str = "batch",
        blocks_per_stage: Annotated[int, Range(1, 100)] = 3,  # He et al.: n = 3 gives 6n + 2 = 20 layers
    ) -> None:
        super().__init__()
        make_norm = partial(norm_layer, norm)
        self.stem = nn.Sequential(_cifar_stem(in_shape[0], 16), make_norm(16), nn.ReLU())
        stages: list[nn.Module] = []
        channels = 16
        for index, width in enumerate((16, 32, 64)):
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                shortcut = None
                if stride != 1 or channels != width:
                    shortcut = nn.Sequential(
                        nn.Conv2d(channels, width, 1, stride=stride, bias=False), make_norm(width)
                    )
                stages.append(tv_resnet.BasicBlock(channels, width, stride, shortcut, norm_layer=make_norm))
                channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))
