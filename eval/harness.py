"""Run a grid of attacks against defended rounds, resumably, in parallel worker processes.

Each :class:`~gradleak.eval.grid.Run` is executed from scratch by :func:`execute`: the victim
side builds the scenario's round under the defense stack (``scenario.build_round``), the attack
receives only ``round.view``, and only here are its reconstruction and ``round.truth`` brought
together and scored (``eval.metrics.score``). The parent process alone writes
``results.jsonl`` (:class:`~gradleak.eval.results.ResultStore`), one durable line per finished
run, so a sweep killed at any moment resumes by running the same command again.

Workers are ``spawn``-ed processes (fork would copy torch's thread pools and locks) with one
torch thread each, since parallelism comes from the processes. A worker whose parent died
(a SIGKILL leaves no time to clean up) notices and exits instead of lingering.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from skimage import io

import gradleak
from gradleak.defenses import build_stack
from gradleak.device import resolve_device
from gradleak.errors import GradleakError
from gradleak.eval.grid import Run, seeded_attack, import_plugins
from gradleak.eval.metrics import Scores, score
from gradleak.eval.results import ResultStore
from gradleak.progress import progress, set_quiet
from gradleak.scenario import build_round
from gradleak.threat import Reconstruction, Truth

RESULTS = "results.jsonl"
MAX_SAVED_IMAGES = 16  # per run; a large batch is summarised by its first images


def execute(run: Run) -> dict[str, Any]:
    """Run one cell of the grid and return its result record (JSON-ready apart from floats)."""
    device = resolve_device(run.device)
    torch.manual_seed(run.seed)
    stack = build_stack(run.defenses)
    attack = seeded_attack(run.attack, run.seed, f"attack {run.attack!r}")

    start = time.perf_counter()
    round_ = build_round(run.scenario, stack, device, noise_seed=run.seed)
    round_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reconstruction = attack.reconstruct(round_.view)
    attack_seconds = time.perf_counter() - start

    scores = score(reconstruction, round_.truth)
    epsilons = [(d.name, d.epsilon()) for d in stack if d.epsilon() is not None]
    return {
        "key": run.key,
        "kind": "attack",
        "config": run.config,
        "label": run.label,
        "seed": run.seed,
        "metrics": {**scores.summary(), "success_rate": scores.success_rate()},
        "epsilon": epsilons[0][1] if epsilons else None,
        "dp": [{"defense": name, "epsilon": eps, "delta": _delta(stack, name)} for name, eps in epsilons],
        "noise_seeded": bool(epsilons),  # experiments fix the DP noise seed; deployments must not
        "view": {
            "num_examples": round_.view.num_examples,
            "cohort_size": round_.view.cohort_size,
            "aggregate": round_.view.aggregate,
            "defenses": list(round_.view.defenses),
        },
        "cost": {
            **{k: float(v) for k, v in round_.cost.items()},
            "round_seconds": round_seconds,
            "attack_seconds": attack_seconds,
            "update_bytes": sum(u.numel() * u.element_size() for u in round_.view.update),
        },
        "attack_info": _plain(reconstruction.info),
        "iterations": len(reconstruction.history),
        "images": save_images(Path(run.out), run.key, round_.truth, reconstruction, scores),
        "device": str(device),
        "gradleak": gradleak.__version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _delta(stack: Any, name: str) -> float | None:
    defense = next(d for d in stack if d.name == name)
    return getattr(defense.config, "delta", None)


def _plain(info: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of an attack's info (numbers, strings, flags)."""
    return {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool)) or v is None}


def _png(path: Path, image: torch.Tensor) -> None:
    array = (image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    tmp = path.with_suffix(".tmp.png")
    io.imsave(tmp, array[..., 0] if array.shape[2] == 1 else array, check_contrast=False)
    os.replace(tmp, path)  # a killed run never leaves a half-written PNG under the final name


def save_images(out: Path, key: str, truth: Truth, reconstruction: Reconstruction, scores: Scores) -> dict[str, list[str]]:
    """PNG per truth image and the reconstruction matched to it; paths relative to ``out``."""
    folder = out / "images" / key
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, list[str]] = {"truth": [], "reconstruction": []}
    for i, partner in enumerate(scores.order[:MAX_SAVED_IMAGES]):
        target = truth.images[i]
        guess = reconstruction.images[partner] if partner >= 0 else torch.full_like(target, 0.5)
        for kind, image in (("truth", target), ("reconstruction", guess)):
            path = folder / f"{kind}-{i}.png"
            _png(path, image)
            paths[kind].append(str(path.relative_to(out)))
    return paths


# --- workers -------------------------------------------------------------------------------


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(parent: int, plugins: Sequence[str]) -> None:
    torch.set_num_threads(1)
    set_quiet(True)  # one overall bar in the parent; workers' inner bars would garble it
    import_plugins(plugins)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


@dataclass
class SweepOutcome:
    total: int
    skipped: int
    finished: int = 0
    failures: list[tuple[Run, str]] = field(default_factory=list)
    store: ResultStore | None = None


def run_grid(
    runs: Sequence[Run],
    out: str | Path,
    workers: int = 1,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> SweepOutcome:
    """Execute the runs not yet in ``out/results.jsonl``, appending each record as it finishes.

    A run that raises is reported in the outcome and not recorded, so the next invocation
    retries it; the other runs go on.
    """
    out = Path(out)
    store = ResultStore(out / RESULTS)
    todo = [r for r in runs if r.key not in store]
    outcome = SweepOutcome(total=len(runs), skipped=len(runs) - len(todo), store=store)
    if not todo:
        return outcome
    bar = progress(total=len(todo), desc="runs", unit="run", leave=True)

    def finish(run: Run, record: dict[str, Any] | None, error: str | None) -> None:
        if record is not None:
            store.append(record)
            outcome.finished += 1
            if on_record:
                on_record(record)
        else:
            outcome.failures.append((run, error or "failed"))
            bar.write(f"run {run.key} ({run.label['scenario']}, {run.label['attack']}, {run.label['defense']}) failed: {error}")
        bar.update(1)

    try:
        if workers <= 1:
            for run in todo:
                record, error = _attempt(run)
                finish(run, record, error)
        else:
            _parallel(todo, workers, finish)
    finally:
        bar.close()
    return outcome


def _attempt(run: Run) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return execute(run), None
    except GradleakError as exc:
        return None, str(exc)


def _parallel(todo: Sequence[Run], workers: int, finish: Callable[..., None]) -> None:
    context = multiprocessing.get_context("spawn")
    plugins = tuple(dict.fromkeys(p for r in todo for p in r.plugins))
    with ProcessPoolExecutor(
        max_workers=min(workers, len(todo)), mp_context=context, initializer=_init_worker,
        initargs=(os.getpid(), plugins),
    ) as pool:
        pending: dict[Future, Run] = {pool.submit(_attempt, run): run for run in todo}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    run = pending.pop(future)
                    record, error = future.result()
                    finish(run, record, error)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def describe_outcome(outcome: SweepOutcome) -> str:
    parts = [f"{outcome.finished} run(s) finished"]
    if outcome.skipped:
        parts.append(f"{outcome.skipped} already done")
    if outcome.failures:
        parts.append(f"{len(outcome.failures)} failed (rerun the same command to retry them)")
    return ", ".join(parts) + f" of {outcome.total}"


__all__ = ["RESULTS", "SweepOutcome", "describe_outcome", "execute", "run_grid", "save_images"]
