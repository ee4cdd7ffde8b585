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
from dataclasses import dataclass
from typing import Sequence

import torch

from gradleak.attacks.dlg import DLG, search_dtype
from gradleak.attacks.matching import CHECK_EVERY, check_view
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
    # problems stepped together in each worker; 0: 8 on the CPU, where 8 cost as little per problem as
    # 24 (2.1 against 2.3 ms, compiled, one thread) and leave a shorter tail, 64 on CUDA
    slots: int = 0
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
    started = time.perf_counter()
    joint = config.labels == "joint"
    first = views[0]
    device = first.update[0].device
    dtype = search_dtype(config.precision)
    batch = FunctionalMatching(first, joint, dtype, compile=config.compile)
    compiled = config.compile
    targets = torch.stack([torch.cat([u.flatten() for u in v.update]) for v in views]).to(dtype)
    target_sq = torch.stack([
        torch.zeros(batch.layers, device=device, dtype=dtype).index_add(0, batch.layer, t.square()) for t in targets
    ]).clamp_min(1e-30)
    # (P, 1): one example per problem
    labels = torch.stack([recover_labels(v, config.labels) for v in views]) if not joint else torch.zeros(
        len(views), 1, dtype=torch.long, device=device
    )
    generator = torch.Generator(device=device).manual_seed(config.seed)
    stall = LBFGSSettings(abandon=config.abandon_stalled)

    def start_point(start: int) -> torch.Tensor:
        scale = config.init_scale if start % 2 == 0 else 1.0  # as the single-problem search: odd starts N(0, 1)
        parts = [scale * torch.randn(batch.pixels, generator=generator, device=device)]
        if joint:
            parts.append(torch.randn(batch.classes, generator=generator, device=device))
        return torch.cat(parts).to(dtype)

    queue = list(range(len(views)))
    width = min(slots or (64 if device.type == "cuda" else 8), len(views))
    problem = [queue.pop(0) for _ in range(width)]  # the problem each slot works on
    history = config.history or default_history(device)
    starts_at = torch.stack([start_point(0) for _ in range(width)])
    optimizer = BatchedLBFGS(
        starts_at, history=history, lr=config.lr, max_step=config.max_step or None, compile=config.compile,
        storage=search_dtype(config.history_precision),
    )
    steps = [0] * width  # evaluations of the slot's current start
    starts = [1] * width
    spent = [0] * len(views)
    losses: list[list[float]] = [[] for _ in range(width)]
    best: list[tuple[float, torch.Tensor] | None] = [None] * len(views)
    finished = iteration = 0
    bar = progress(total=len(views), desc="dlg x many")
    while finished < len(views):
        iteration += 1
        active = [k for k in range(width) if problem[k] is not None]
        index = torch.tensor([problem[k] if problem[k] is not None else 0 for k in range(width)], device=device)
        loss, squared, grads = batch(optimizer.z, targets[index], labels[index])
        for k in active:
            steps[k] += 1
            spent[problem[k]] += 1
        if iteration % CHECK_EVERY == 0:
            worst = (squared / target_sq[index]).max(dim=1).values.tolist()
            values = loss.tolist()
            for k in active:
                p = problem[k]
                if best[p] is None or worst[k] < best[p][0]:
                    best[p] = (worst[k], optimizer.z[k].detach().clone())
                losses[k].append(values[k])
                stalled = stall.stalled(losses[k], best[p][0])
                out_of_budget = steps[k] >= config.iterations or not math.isfinite(values[k])
                # solved, or stopped (or ran out of budget) at the precision floor (see lbfgs_search)
                solved = worst[k] < config.tolerance or ((stalled or out_of_budget) and best[p][0] < stall.floor)
                if not (solved or stalled or out_of_budget):
                    continue
                if not solved and starts[k] < config.restarts:
                    starts[k] += 1  # a fresh start of the same problem
                else:
                    finished += 1
                    bar.update(1)
                    problem[k] = queue.pop(0) if queue else None
                    starts[k] = 1
                steps[k], losses[k] = 0, []
                optimizer.restart(torch.tensor([k], device=device), start_point(starts[k] - 1)[None])
            busy = [k for k in range(width) if problem[k] is not None]
            # A compiled function is specialised to its batch width (vmap's convolutions fix it, and
            # a new width recompiles: ~30 s on one CPU thread), so a compiled batch narrows only when
            # at most a quarter of it is busy, and runs eagerly from then on: on LeNet-Zhu, one CPU
            # thread, 2 problems cost 17.5 ms a step eagerly against 26 ms for 8 compiled.
            if not queue and busy and len(busy) < width and (not compiled or 4 * len(busy) <= width):
                keep = torch.tensor(busy, device=device)
                optimizer.keep(keep)
                grads = grads[keep]
                problem, steps, starts, losses = ([per_slot[k] for k in busy] for per_slot in (problem, steps, starts, losses))
                width = len(busy)
                if compiled:
                    batch, optimizer.compile, compiled = FunctionalMatching(first, joint, dtype), False, False
        optimizer.tell(grads)
    bar.close()
    seconds = time.perf_counter() - started
    reconstructions = []
    for p, view in enumerate(views):
        worst, z = best[p]
        x = z[: batch.pixels].view(batch.shape)
        label = z[batch.pixels :].argmax().reshape(1) if joint else labels[p].reshape(1)
        reconstructions.append(
            Reconstruction(
                images=view.normalization.denormalize(x).float().cpu(),
                labels=label.cpu(),
                info={"worst_layer_error": worst, "solved": worst < config.tolerance, "evaluations": spent[p],
                      "batch_seconds": seconds},
            )
        )
    return reconstructions
