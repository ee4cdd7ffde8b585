"""Inverting Gradients.

Geiping, Bauermeister, Dröge, Moeller, "Inverting Gradients -- How easy is it to break privacy
in federated learning?", NeurIPS 2020, eq. 4 and Sec. 4: minimise

    1 - <grad(x', y), grad> / (||grad(x', y)|| ||grad||)  +  alpha TV(x')

with Adam (lr 0.1) on the sign of the gradient, x' clamped to the valid pixel box after each
step, the learning rate divided by 10 at 3/8, 5/8 and 7/8 of the iterations, from several
random starts of which the lowest final objective wins (or, with ``combine=mean``, whose
pixel-wise mean is returned: an ensemble, not in the paper). The cosine ignores the update's
scale, which is what lets it invert trained networks and multi-step updates. Labels come
from a rule (iDLG's for one image, counts for a batch) or the view's known labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from gradleak.attacks import adaptive, register
from gradleak.attacks.base import Attack
from gradleak.attacks.dlg import MAX_ITERATIONS, MAX_SCALE, MAX_STARTS
from gradleak.attacks.matching import GradientMatching
from gradleak.attacks.search_adam import AdamSettings, adam_search
from gradleak.attacks.labels import recover_labels
from gradleak.spec import Range, Seed
from gradleak.threat import Reconstruction, ServerView


@register
class InvertingGradients(Attack):
    name = "ig"

    @dataclass(frozen=True)
    class Config:
        iterations: Annotated[int, Range(1, MAX_ITERATIONS)] = 4800  # IG: 4,800 on CIFAR-10 (24,000 for the paper's best images)
        restarts: Annotated[int, Range(1, MAX_STARTS)] = 1  # IG: several (each costs the full budget); ranked by the final objective
        combine: str = "best"  # IG: the start with the lowest objective; "mean": the starts' pixel-wise mean
        lr: Annotated[float, Range(0, None, low_open=True)] = 0.1  # IG
        tv: Annotated[float, Range(0, None)] = 1e-4  # IG: 1e-4 on CIFAR-10, up to 1e-1 on ImageNet
        objective: str = "cosine"  # IG; "l2" gives DLG's distance with IG's optimiser
        signed: bool = True  # IG: Adam on signed gradients
        boxed: bool = True  # IG: clamp to the valid pixel range
        init_scale: Annotated[float, Range(0, MAX_SCALE)] = 1.0  # IG: N(0, 1) starts in the normalised space
        labels: str = "auto"  # iDLG's rule for one image, counts for a batch; or yin|known
        adaptive: bool = False  # not in IG: model the view's defenses in the loss (gradleak.attacks.adaptive)
        seed: Seed = 0

    def settings(self) -> AdamSettings:
        c = self.config
        return AdamSettings(c.iterations, c.restarts, c.lr, c.signed, c.boxed, init_scale=c.init_scale, combine=c.combine)

    def problem(self, view: ServerView, labels: torch.Tensor) -> GradientMatching:
        observed, _ = adaptive.observations(view) if self.config.adaptive else (None, ())
        return GradientMatching(
            view, objective=self.config.objective, labels=labels, tv=self.config.tv, observations=observed
        )

    def reconstruct(self, view: ServerView) -> Reconstruction:
        labels = recover_labels(view, self.config.labels)
        problem = self.problem(view, labels)
        generator = torch.Generator(device=problem.device).manual_seed(self.config.seed)
        search = adam_search(problem, self.settings(), generator, desc=self.name)
        adapted = adaptive.observations(view)[1] if self.config.adaptive else {}
        return problem.reconstruction(search, labels, label_strategy=self.config.labels, **adapted)
