"""GradInversion: batch recovery with BatchNorm-statistics and group-consistency priors.

Yin, Mallya, Vahdat, Alvarez, Kautz, Molchanov, "See through Gradients: Image Batch Recovery
via GradInversion", CVPR 2021, eq. 3-8: labels of a batch with distinct labels from the last
layer (eq. 4, :func:`gradleak.attacks.labels.yin_labels`), then

    ||grad(x') - grad||^2 + a_tv TV(x') + a_l2 ||x'||^2 + a_bn R_bn(x') + a_group R_group(x')

where R_bn matches every BatchNorm layer's batch statistics on x' to the running statistics
the model carries (:class:`gradleak.attacks.priors.BatchNormStatistics`), and R_group pulls
each of several reconstructions started from different seeds towards their pixel-wise mean
(:func:`gradleak.attacks.priors.group_consistency`; the paper also registers the members
before averaging, which is left out here). Optimised with Adam; the group member with the
lowest final loss is returned. On a model without BatchNorm the BN term is off (``info``
says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn

from gradleak.attacks import register
from gradleak.attacks.base import Attack
from gradleak.attacks.dlg import MAX_ITERATIONS, MAX_STARTS
from gradleak.attacks.matching import GradientMatching
from gradleak.attacks.search_adam import AdamSettings, adam_search
from gradleak.attacks.labels import recover_labels
from gradleak.attacks.priors import group_consistency
from gradleak.spec import Range, Seed
from gradleak.threat import Reconstruction, ServerView


@register
class GradInversion(Attack):
    name = "gradinversion"

    @dataclass(frozen=True)
    class Config:
        iterations: Annotated[int, Range(1, MAX_ITERATIONS)] = 4000  # GradInversion: 20k on ImageNet; fewer suffice at 32x32
        group: Annotated[int, Range(1, MAX_STARTS)] = 4  # GradInversion: a group of reconstructions from different seeds
        lr: Annotated[float, Range(0, None, low_open=True)] = 0.1  # GradInversion: Adam, lr 0.1
        objective: str = "l2"  # GradInversion: squared L2 gradient distance (eq. 3)
        signed: bool = True  # IG's signed steps; GradInversion uses plain Adam (signed=false)
        tv: Annotated[float, Range(0, None)] = 1e-4  # a_tv
        l2: Annotated[float, Range(0, None)] = 1e-6  # a_l2, on the normalised image
        bn: Annotated[float, Range(0, None)] = 1e-2  # a_bn
        consistency: Annotated[float, Range(0, None)] = 1e-3  # a_group, switched on after the first half of the iterations
        labels: str = "yin"  # GradInversion: distinct labels (eq. 4); or counts|known|auto
        seed: Seed = 0

    def reconstruct(self, view: ServerView) -> Reconstruction:
        c = self.config
        labels = recover_labels(view, c.labels)
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in view.model.modules())
        problem = GradientMatching(view, objective=c.objective, labels=labels, tv=c.tv, bn=c.bn if has_bn else 0.0)
        generator = torch.Generator(device=problem.device).manual_seed(c.seed)
        settings = AdamSettings(c.iterations, c.group, c.lr, signed=c.signed)
        step = {"count": 0}

        def regulariser(images: torch.Tensor) -> torch.Tensor:
            step["count"] += 1
            penalty = c.l2 * images.square().sum(dim=(1, 2, 3, 4)).sum()
            if c.group > 1 and step["count"] > c.iterations // 2:
                penalty = penalty + c.consistency * group_consistency(images) * len(images)
            return penalty

        search = adam_search(problem, settings, generator, desc=self.name, regulariser=regulariser)
        return problem.reconstruction(search, labels, label_strategy=c.labels, bn_prior=has_bn and c.bn > 0)
