"""DLG's search (Zhu et al., "Deep Leakage from Gradients", NeurIPS 2019): L-BFGS, lr 1, no line
search, on one flat vector of unknowns with the compact L-BFGS of :mod:`gradleak.attacks.lbfgs`.

A start that stalls is abandoned for a fresh one (:meth:`LBFGSSettings.stalled`), and the search
stops as soon as every layer of the update is matched to ``tolerance``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from gradleak.attacks.lbfgs import BatchedLBFGS
from gradleak.attacks.matching import CHECK_EVERY, Best, Candidate, GradientMatching, Search, full_precision
from gradleak.progress import progress


@dataclass(frozen=True)
class LBFGSSettings:
    iterations: int = 6000  # evaluations per start; DLG: 300 L-BFGS steps of up to 20 evaluations
    restarts: int = 4  # fresh starts allowed when one stalls
    history: int = 100  # torch.optim.LBFGS's default history_size
    lr: float = 1.0  # DLG
    tolerance: float = 1e-7  # solved when every layer's relative squared error is below this
    init_scale: float = 1.0  # std of the random images of even starts (DLG: 1, in the normalised space); odd: 1
    max_step: float | None = None  # cap on a step's RMS entry (BatchedLBFGS); DLG: none
    storage: torch.dtype | None = None  # precision of the stored L-BFGS pairs (BatchedLBFGS); None: the unknowns'
    stall_window: int = 600  # a start far from a solution is given up when its best loss has not halved over this many evaluations
    stall_factor: float = 0.5  # ... by this factor (calibration: docs/lab/dlg_stall.md)
    stall_above: float = 1e-3  # "far": some layer's relative error above this
    frozen_window: int = 100  # a start whose loss has not moved over this many evaluations is frozen (saturated sigmoids)
    frozen_band: float = 1e-3  # "not moved": within this relative band
    floor: float = 1e-6  # a stopped start with every layer below this is at what the precision allows: no restart
    abandon: bool = True  # False runs every start to its budget, as DLG's 300 steps do (fixed-budget comparisons)

    def stalled(self, losses: Sequence[float], score: float) -> bool:
        """Whether to abandon a start with these losses (one per check, the last is now) and best score."""
        if not self.abandon:
            return False
        frozen = max(1, self.frozen_window // CHECK_EVERY)
        if len(losses) > frozen and max(losses[-1 - frozen :]) <= (1 + self.frozen_band) * min(losses[-1 - frozen :]):
            return True
        checks = max(1, self.stall_window // CHECK_EVERY)
        if score > self.stall_above and len(losses) > checks:
            return min(losses) > self.stall_factor * min(losses[: -checks])
        return False


def default_history(device: torch.device) -> int:
    """L-BFGS memory: 100 pairs on the CPU, 400 on a GPU.

    More pairs cut the evaluations DLG needs (400 instead of 100: about 1.6x fewer on photos),
    but every step reads the whole history twice: 400 pairs of 3,082 floats are 10 MB, beyond
    the caches of a small CPU, where the step then costs more than the evaluations it saves.
    """
    return 400 if device.type == "cuda" else 100


def lbfgs_search(
    problem: GradientMatching,
    settings: LBFGSSettings,
    generator: torch.Generator,
    desc: str = "L-BFGS",
    on_check: Callable[[int, torch.Tensor], None] | None = None,
    first: torch.Tensor | None = None,
) -> Search:
    """Minimise the matching loss with L-BFGS from fresh starts until one solves the problem.

    ``on_check(evaluations, images)`` sees the current normalised images at every check (every
    ``CHECK_EVERY`` evaluations), for live displays and for benchmarks that watch the truth.
    ``first`` (flat unknowns) replaces the first random start, e.g. an analytic reconstruction.
    """
    started = time.perf_counter()
    best: Best[Candidate] = Best()  # over all starts
    history: list[dict[str, float]] = []
    total = 0
    z0 = problem.random_point(generator, settings.init_scale) if first is None else first
    with full_precision(problem), progress(total=settings.iterations * settings.restarts, desc=desc) as bar:
        for start in range(settings.restarts):
            # Odd starts draw from DLG's own N(0, 1): a case that defeats starts near the mean
            # (one photo in eight here) usually falls to a standard-normal one, and vice versa.
            z = z0 if start == 0 else problem.random_point(generator, settings.init_scale if start % 2 == 0 else 1.0)
            candidate, evaluations, outcome = _lbfgs_start(problem, z, settings, start, history, total, on_check)
            total += evaluations
            bar.update(evaluations)
            best.offer(candidate.score, lambda: candidate)
            if outcome in ("solved", "converged"):
                break
    return Search(
        best=best.point, history=history, evaluations=total, starts=start + 1,
        seconds=time.perf_counter() - started, solved=outcome == "solved", outcome=outcome,
    )


def _lbfgs_start(
    problem: GradientMatching,
    z: torch.Tensor,
    settings: LBFGSSettings,
    start: int,
    history: list[dict[str, float]],
    offset: int,
    on_check: Callable[[int, torch.Tensor], None] | None,
) -> tuple[Candidate, int, str]:
    """One start: ``solved`` (every layer below tolerance), ``converged`` (stalled or out of
    budget below ``floor``), ``stalled``, ``diverged`` or ``budget`` (iterations used up)."""
    optimizer = BatchedLBFGS(
        z[None], history=settings.history, lr=settings.lr, max_step=settings.max_step, compile=problem.compiled,
        storage=settings.storage,
    )
    best = Best(_candidate(problem, z, math.inf, math.inf, 0, start))  # in this start
    losses: list[float] = []  # at every check
    outcome = "budget"
    for evaluation in range(1, settings.iterations + 1):
        point = optimizer.z[0]
        result, grad = problem.loss_and_grad(point)
        if evaluation % CHECK_EVERY == 0 or evaluation == 1:
            loss = float(result.loss.detach())
            score = float(result.relative.max())
            if not math.isfinite(loss):
                outcome = "diverged"
                break
            history.append({"iteration": offset + evaluation, "start": start, "loss": loss, "score": score})
            if on_check is not None:
                on_check(offset + evaluation, problem.split(point.detach())[0])
            best.offer(score, lambda: _candidate(problem, point.detach(), loss, score, evaluation, start))
            if score < settings.tolerance:
                return best.point, evaluation, "solved"
            losses.append(loss)
            if settings.stalled(losses, best.score):
                outcome = "stalled"
                break
        optimizer.tell(grad[None])
    # Stopped moving, or still creeping down when the budget ends (the darkest photo: 42 dB at
    # 1.7e-7 after 10,000 evaluations), below the floor: a fresh start cannot get further.
    if outcome in ("stalled", "budget") and best.score < settings.floor:
        outcome = "converged"
    return best.point, evaluation, outcome


def _candidate(
    problem: GradientMatching, z: torch.Tensor, loss: float, score: float, evaluation: int, start: int
) -> Candidate:
    images, logits = problem.split(z)
    return Candidate(images.clone(), None if logits is None else logits.clone(), loss, score, evaluation, start)
