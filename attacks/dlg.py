"""Deep Leakage from Gradients.

Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019, Algorithm 1: start from random
data and a random soft label, and minimise ``||grad(x', y') - grad||^2`` (eq. 4) over both
with L-BFGS (lr 1). Here the search restarts when a start stalls and is scored layer by layer
(see :mod:`gradleak.attacks.matching`); ``labels`` other than ``joint`` fix the labels with a
rule from :mod:`gradleak.attacks.labels` and optimise only the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable

import torch

from gradleak.attacks import adaptive, register
from gradleak.attacks.base import Attack
from gradleak.attacks.matching import GradientMatching
from gradleak.attacks.search_lbfgs import LBFGSSettings, default_history, lbfgs_search
from gradleak.attacks.labels import recover_labels
from gradleak.errors import GradleakError
from gradleak.spec import Range, Seed
from gradleak.threat import Reconstruction, ServerView


# Limits on what a spec may ask for: beyond them a run takes days or a start's memory runs out.
MAX_ITERATIONS = 1_000_000  # evaluations (or steps) per start; 100x the longest budget in docs/benchmarks.md
MAX_STARTS = 1_000  # restarts or group members
MAX_SCALE = 1e6  # std of a random start; 1e4 (saturated sigmoids, a start that stalls) must stay possible

PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


def search_dtype(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise GradleakError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


@register
class DLG(Attack):
    name = "dlg"

    @dataclass(frozen=True)
    class Config:
        iterations: Annotated[int, Range(1, MAX_ITERATIONS)] = 10000  # evaluations per start (DLG: 300 L-BFGS steps of up to 20)
        restarts: Annotated[int, Range(1, MAX_STARTS)] = 6  # fresh starts when one stalls (DLG: one)
        history: Annotated[int, Range(0, 10_000)] = 0  # L-BFGS memory; 0: 100 on the CPU, 400 on CUDA (search_lbfgs.default_history)
        lr: Annotated[float, Range(0, None, low_open=True)] = 1.0  # DLG
        tolerance: Annotated[float, Range(0, 1)] = 1e-7  # solved when every layer's relative squared error is below this
        init_scale: Annotated[float, Range(0, MAX_SCALE)] = 0.1  # start N(0, s^2) near the data mean (DLG: 1; fewer evaluations, docs/attacks.md)
        max_step: Annotated[float, Range(0, None)] = 0.3  # cap on a step's RMS entry so saturated starts survive (DLG: uncapped = 0)
        labels: str = "joint"  # DLG: a soft label optimised with the image; or idlg|yin|counts|known
        precision: str = "float64"  # DLG: float32, which stalls below 40 dB on dark photos (docs/attacks.md)
        history_precision: str = "float32"  # not in DLG: L-BFGS pairs only shape the direction, half the memory traffic
        compile: bool = False  # not in DLG: torch.compile pays after its one-time compile, for long or many attacks
        tv: Annotated[float, Range(0, None)] = 0.0  # not in DLG: a total-variation prior for batches (IG's `tv`)
        abandon_stalled: bool = True  # not in DLG: give up a start that stops moving for a fresh one; False spends its budget
        adaptive: bool = False  # not in DLG: match what the view's defenses leave (Balunović et al. 2022; attacks.adaptive)
        seed: Seed = 0

    def settings(self, problem: GradientMatching) -> LBFGSSettings:
        c = self.config
        # A batch converges more slowly than one image: give its starts proportionally longer to halve the loss.
        return LBFGSSettings(
            c.iterations, c.restarts, c.history or default_history(problem.device), c.lr, c.tolerance, c.init_scale,
            max_step=c.max_step or None, stall_window=LBFGSSettings.stall_window * problem.batch,
            storage=search_dtype(c.history_precision), abandon=c.abandon_stalled,
        )

    def reconstruct(
        self, view: ServerView, on_check: Callable[[int, torch.Tensor], None] | None = None
    ) -> Reconstruction:
        """``on_check(evaluations, normalised images)`` watches the search (see ``lbfgs_search``)."""
        labels = None if self.config.labels == "joint" else recover_labels(view, self.config.labels)
        observed, adapted = adaptive.observations(view) if self.config.adaptive else (None, {})
        problem = GradientMatching(
            view, objective="l2", labels=labels, tv=self.config.tv, dtype=search_dtype(self.config.precision),
            compile=self.config.compile, observations=observed,
        )
        generator = torch.Generator(device=problem.device).manual_seed(self.config.seed)
        search = lbfgs_search(problem, self.settings(problem), generator, desc=self.name, on_check=on_check)
        return problem.reconstruction(search, labels, label_strategy=self.config.labels, **adapted)
