"""Deep Leakage from Gradients.

Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019, Algorithm 1: start from random
data and a random soft label, and minimise ``||grad(x', y') - grad||^2`` (eq. 4) over both
with L-BFGS (lr 1). Here the search restarts when a start stalls and is scored layer by layer
(see :mod:`gradleak.attacks.engine`); ``labels`` other than ``joint`` fix the labels with a
rule from :mod:`gradleak.attacks.labels` and optimise only the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable

import torch

from gradleak.attacks import adaptive, register
from gradleak.attacks.base import Attack
from gradleak.attacks.engine import GradientMatching, LBFGSSettings, default_history, lbfgs_search
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
        iterations: Annotated[int, Range(1, MAX_ITERATIONS)] = 10000  # evaluations per start (DLG: 300 L-BFGS steps of up to 20); slow photos need ~8,000
        restarts: Annotated[int, Range(1, MAX_STARTS)] = 6  # fresh starts when one stalls (DLG: one); a failing start costs 200-1,500 evaluations
        history: Annotated[int, Range(0, 10_000)] = 0  # L-BFGS memory; 0: 100 on the CPU, 400 on CUDA (engine.default_history)
        lr: Annotated[float, Range(0, None, low_open=True)] = 1.0  # DLG
        tolerance: Annotated[float, Range(0, 1)] = 1e-7  # solved when every layer's relative squared error is below this
        # DLG draws its start from N(0, 1) in the normalised space; starting near the data mean
        # (N(0, 0.1^2)) needs 1.2-2.6x fewer evaluations on photos (docs/attacks.md). Odd
        # restarts still draw from N(0, 1).
        init_scale: Annotated[float, Range(0, MAX_SCALE)] = 0.1
        # DLG takes every quasi-Newton step whole; an overshooting second step froze ~1 start in 5
        # on photos (saturated sigmoids). Capping a step's RMS entry at 0.3 keeps those starts alive.
        max_step: Annotated[float, Range(0, None)] = 0.3  # 0: uncapped
        labels: str = "joint"  # DLG: a soft label optimised with the image; or idlg|yin|counts|known
        # DLG: float32. In float32 the search stalls near a worst-layer error of 1e-6, below 40 dB on
        # the darkest photo (34.7 dB; 42.3 dB in float64), and a CPU evaluation costs only ~1.15x more.
        precision: str = "float64"  # or float32
        # Not in DLG: L-BFGS's stored steps and gradient changes (2 x 100 vectors) in float32. They
        # only shape the direction; the iterate and gradients stay in `precision`. Each step then
        # reads half the memory: ~1.2x faster iterations on one CPU thread, with the same
        # evaluations to the same PSNR on photos 0-5 (docs/attacks.md).
        history_precision: str = "float32"  # or float64
        # Not in DLG. Compiled, an iteration (evaluation and L-BFGS step) costs ~2x less on LeNet-Zhu,
        # after a one-time compile of ~30 s (5 s from torch's on-disk cache): worth it for long or
        # many attacks, not for one face (docs/attacks.md).
        compile: bool = False
        # Not in DLG: a total-variation prior (its weight, on the same TV as IG's `tv`) for
        # batches whose gradient does not single out one set of images (docs/benchmarks.md).
        tv: Annotated[float, Range(0, None)] = 0.0
        # Not in DLG, which runs its 300 steps: a start that stops making progress is given up for
        # a fresh one (engine.LBFGSSettings.stalled). False spends each start's whole budget.
        abandon_stalled: bool = True
        # Not in DLG: match only what the defenses named in the view leave (Balunović et al. 2022;
        # gradleak.attacks.adaptive): pruned entries ignored, quantiser bins matched, Soteria's layer left out.
        adaptive: bool = False
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
