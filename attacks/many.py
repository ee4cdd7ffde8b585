"""Many independent single-image DLG/iDLG attacks at once, vectorised with ``torch.func``.

A server that attacks every client of a round solves one small problem per client: same
global model, a different gradient each. One LeNet-Zhu evaluation is too small to keep a
processor busy, so P problems are evaluated together with ``vmap`` over the per-problem
matching loss (its inner gradient is ``torch.func.grad`` of the same
:func:`gradleak.federated.loss_fn` the clients use), and stepped together by the batched
L-BFGS of :mod:`gradleak.attacks.lbfgs`. A slot whose problem is solved, or has used its
budget, takes the next problem at once, so the batch never waits for its slowest member;
a start that stalls is replaced by a fresh start of the same problem. Once no problem is left
to take, the batch narrows to the problems still running, so the last, slowest ones are not
stepped at the cost of the full width. ``workers`` processes share the problems, one batch
each; they are spawned here, so each applies the explicit ``ManySettings.compute`` (one
intra-op thread by default).

Only FedSGD updates of one example each and models without BatchNorm (its running statistics
cannot be updated inside ``vmap``) are supported; the views must share the same model.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from gradleak.attacks.dlg import DLG, search_dtype
from gradleak.attacks.matching import CHECK_EVERY, Best, check_view
from gradleak.attacks.search_lbfgs import LBFGSSettings, default_history
from gradleak.attacks.functional import FunctionalMatching, supports
from gradleak.attacks.labels import recover_labels
from gradleak.attacks.lbfgs import BatchedLBFGS
from gradleak.compute import Compute
from gradleak.errors import GradleakError
from gradleak.progress import progress
from gradleak.threat import Reconstruction, ServerView


@dataclass(frozen=True)
class ManySettings:
    slots: int = 0  # problems stepped together in each worker; 0: 8 on the CPU (docs/attacks.md), 64 on CUDA
    workers: int = 1  # processes, each applying ``compute``
    compute: Compute = Compute()  # each worker's threads and backend (the calling process keeps its own)


def reconstruct_many(
    views: Sequence[ServerView], config: DLG.Config | None = None, settings: ManySettings = ManySettings()
) -> list[Reconstruction]:
    """DLG (or iDLG, per ``config.labels``) on every view; reconstructions in the views' order."""
    config = config or DLG.Config()
    views = list(views)
    if not views:
        return []
    _check_views(views)
    if settings.workers <= 1 or len(views) < 2:
        return _solve(views, config, settings.slots)
    parts = [list(range(k, len(views), settings.workers)) for k in range(settings.workers)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(settings.workers) as pool:
        jobs = [([views[i] for i in part], config, settings.slots, settings.compute) for part in parts]
        results = pool.starmap(_worker, jobs)
    ordered: list[Reconstruction | None] = [None] * len(views)
    for part, reconstructions in zip(parts, results):
        for index, reconstruction in zip(part, reconstructions):
            ordered[index] = reconstruction
    return ordered


def _worker(views: list[ServerView], config: DLG.Config, slots: int, compute: Compute) -> list[Reconstruction]:
    compute.apply()  # a process spawned for this call: its settings are ours to set
    return _solve(views, config, slots)


def _check_views(views: list[ServerView]) -> None:
    first = views[0]
    for view in views:
        if view.kind != "gradient" or view.num_examples != 1:
            raise GradleakError("many-problem mode inverts FedSGD gradients of one example each; use the attacks one by one")
        if view.model is not first.model and not all(
            torch.equal(a, b) for a, b in zip(view.model.state_dict().values(), first.model.state_dict().values())
        ):
            raise GradleakError("many-problem mode needs every view to come from the same global model")
    reason = supports(first)
    if reason is not None:
        raise GradleakError(f"many-problem mode cannot run here ({reason}); attack one by one")
    check_view(first)


def _solve(views: list[ServerView], config: DLG.Config, slots: int) -> list[Reconstruction]:
    """DLG's L-BFGS on every view, a batch of slots at a time: step every slot, and at every
    check keep each problem's best point, then give a slot that is done a fresh start of its
    problem or the next problem."""
    started = time.perf_counter()
    search = _ManySearch(views, config, slots)
    iteration = 0
    with progress(total=len(views), desc="dlg x many") as bar:
        while search.finished < len(views):
            iteration += 1
            loss, worst, grads = search.evaluate()
            if iteration % CHECK_EVERY == 0:
                bar.update(search.check(loss.tolist(), worst.tolist()))
                grads = search.narrow(grads)
            search.optimizer.tell(grads)
    return search.reconstructions(time.perf_counter() - started)


@dataclass
class _Slot:
    """One row of the batch: the problem it works on and how its current start is going."""

    problem: int | None
    start: int = 0  # which of the problem's starts
    steps: int = 0  # evaluations of this start
    losses: list[float] = field(default_factory=list)  # at every check of this start


class _ManySearch:
    """The state of :func:`_solve`: the batched matching problem, its slots and each problem's best point."""

    def __init__(self, views: list[ServerView], config: DLG.Config, slots: int) -> None:
        self.views, self.config = views, config
        self.joint = config.labels == "joint"
        first = views[0]
        self.device = first.update[0].device
        self.dtype = search_dtype(config.precision)
        self.batch = FunctionalMatching(first, self.joint, self.dtype, compile=config.compile)
        self.compiled = config.compile
        self.targets = torch.stack([torch.cat([u.flatten() for u in v.update]) for v in views]).to(self.dtype)
        # each problem's squared norm per layer, the denominators of the relative errors
        self.target_sq = torch.stack([
            torch.zeros(self.batch.layers, device=self.device, dtype=self.dtype)
            .index_add(0, self.batch.layer, t.square())
            for t in self.targets
        ]).clamp_min(1e-30)
        # (P, 1): one example per problem
        self.labels = torch.stack([recover_labels(v, config.labels) for v in views]) if not self.joint else torch.zeros(
            len(views), 1, dtype=torch.long, device=self.device
        )
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.stall = LBFGSSettings(abandon=config.abandon_stalled)
        self.queue = list(range(len(views)))
        width = min(slots or (64 if self.device.type == "cuda" else 8), len(views))
        self.slots = [_Slot(self.queue.pop(0)) for _ in range(width)]
        self.optimizer = BatchedLBFGS(
            torch.stack([self.start_point(0) for _ in self.slots]),
            history=config.history or default_history(self.device), lr=config.lr, max_step=config.max_step or None, compile=config.compile,
            storage=search_dtype(config.history_precision),
        )
        self.best: list[Best[torch.Tensor]] = [Best() for _ in views]  # by the worst layer's relative error
        self.spent = [0] * len(views)  # evaluations per problem, over its starts
        self.finished = 0  # problems

    def start_point(self, start: int) -> torch.Tensor:
        """A random start, as the single-problem search draws it: even starts N(0, init_scale^2), odd N(0, 1)."""
        scale = self.config.init_scale if start % 2 == 0 else 1.0
        parts = [scale * torch.randn(self.batch.pixels, generator=self.generator, device=self.device)]
        if self.joint:
            parts.append(torch.randn(self.batch.classes, generator=self.generator, device=self.device))
        return torch.cat(parts).to(self.dtype)

    def evaluate(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every slot's matching loss, worst layer's relative error and gradient at the optimizer's point."""
        index = torch.tensor([slot.problem or 0 for slot in self.slots], device=self.device)
        loss, squared, grads = self.batch(self.optimizer.z, self.targets[index], self.labels[index])
        for slot in self.slots:
            if slot.problem is None:
                continue
            slot.steps += 1
            self.spent[slot.problem] += 1
        return loss, (squared / self.target_sq[index]).max(dim=1).values, grads

    def check(self, values: list[float], worst: list[float]) -> int:
        """Keep each problem's best point and move on the slots that are done; returns the problems finished."""
        finished = 0
        for k, slot in enumerate(self.slots):
            if slot.problem is None:
                continue
            best = self.best[slot.problem]
            best.offer(worst[k], lambda: self.optimizer.z[k].detach().clone())
            slot.losses.append(values[k])
            outcome = self._outcome(slot, values[k], worst[k], best.score)
            if outcome is None:
                continue
            if outcome == "stopped" and slot.start + 1 < self.config.restarts:
                slot.start += 1  # a fresh start of the same problem
            else:
                finished += 1
                slot.problem, slot.start = (self.queue.pop(0) if self.queue else None), 0
            slot.steps, slot.losses = 0, []
            self.optimizer.restart(torch.tensor([k], device=self.device), self.start_point(slot.start)[None])
        self.finished += finished
        return finished

    def _outcome(self, slot: _Slot, loss: float, worst: float, best: float) -> str | None:
        """``solved`` (every layer below tolerance, or stopped below the precision floor: lbfgs_search's
        ``converged``), ``stopped`` (stalled, diverged or out of budget), or None to keep going."""
        stopped = (
            self.stall.stalled(slot.losses, best) or slot.steps >= self.config.iterations or not math.isfinite(loss)
        )
        if worst < self.config.tolerance or (stopped and best < self.stall.floor):
            return "solved"
        return "stopped" if stopped else None

    def narrow(self, grads: torch.Tensor) -> torch.Tensor:
        """Once no problem waits, drop the idle slots (and their rows of ``grads``, returned)."""
        busy = [k for k, slot in enumerate(self.slots) if slot.problem is not None]
        width = len(self.slots)
        # a compiled function is fixed to its batch width (a new width recompiles), so a compiled
        # batch narrows only when at most a quarter of it is busy, and then runs eagerly
        if self.queue or not busy or len(busy) == width or (self.compiled and 4 * len(busy) > width):
            return grads
        keep = torch.tensor(busy, device=self.device)
        self.optimizer.keep(keep)
        self.slots = [self.slots[k] for k in busy]
        if self.compiled:
            self.batch = FunctionalMatching(self.views[0], self.joint, self.dtype)
            self.optimizer.compile = self.compiled = False
        return grads[keep]

    def reconstructions(self, seconds: float) -> list[Reconstruction]:
        """Each problem's best point as a reconstruction, in the views' order."""
        reconstructions = []
        for p, view in enumerate(self.views):
            worst, z = self.best[p].score, self.best[p].point
            x = z[: self.batch.pixels].view(self.batch.shape)
            label = z[self.batch.pixels :].argmax().reshape(1) if self.joint else self.labels[p].reshape(1)
            reconstructions.append(
                Reconstruction(
                    images=view.normalization.denormalize(x).float().cpu(),
                    labels=label.cpu(),
                    info={"worst_layer_error": worst, "solved": worst < self.config.tolerance,
                          "evaluations": self.spent[p], "batch_seconds": seconds},
                )
            )
        return reconstructions
