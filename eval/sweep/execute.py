"""Run a grid of attacks against defended rounds, resumably, in parallel worker processes.

Each :class:`~gradleak.eval.sweep.plan.Run` is executed from scratch by :func:`execute`: the victim
side builds the scenario's round under the defense stack (``scenario.build_round``), the attack
receives only ``round.view``, and only here are its reconstruction and ``round.truth`` brought
together and scored (``eval.metrics.score``). :func:`run_grid` hands the runs to
:func:`~gradleak.eval.sweep.tasks.run_tasks`, which skips finished ones and records each new one in
``results.jsonl`` the moment it ends.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from skimage import io

import gradleak
from gradleak.device import resolve_device
from gradleak.errors import RoundStopped
from gradleak.eval.sweep import backends
from gradleak.eval.store import RESULTS
from gradleak.eval.sweep.plan import Run
from gradleak.eval.metrics import Scores, score
from gradleak.eval.sweep.tasks import Outcome, run_tasks
from gradleak.scenario import build_round
from gradleak.threat import Reconstruction, Truth

MAX_SAVED_IMAGES = 16  # per run; a large batch is summarised by its first images


def execute(run: Run) -> dict[str, Any]:
    """Run one cell of the grid and return its result record (JSON-ready apart from floats)."""
    device = resolve_device(run.device)
    torch.manual_seed(run.seed)
    stack = run.build_stack()
    attack = run.build_attack()

    start = time.perf_counter()
    try:
        round_ = build_round(run.scenario, stack, device, noise_seed=run.seed, server=run.build_server())
    except RoundStopped as stop:  # a defense stopped the round: clients refused the model, or secure aggregation aborted
        return stopped(run, stack, str(stop))
    round_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reconstruction = attack.reconstruct(round_.view)
    attack_seconds = time.perf_counter() - start

    scores = score(reconstruction, round_.truth)
    return {
        **_identity(run, stack),
        "metrics": {**scores.summary(), "success_rate": scores.success_rate()},
        "view": {
            "num_examples": round_.view.num_examples,
            "cohort_size": round_.view.cohort_size,
            "aggregate": round_.view.aggregate,
            "defenses": list(round_.view.defenses),
            "refused": {str(k): why for k, why in round_.refused.items()},
        },
        "cost": {
            **{k: float(v) for k, v in round_.cost.items()},
            "round_seconds": round_seconds,
            "attack_seconds": attack_seconds,
            "update_bytes": sum(u.numel() * u.element_size() for u in round_.view.update),
        },
        "attack_info": _plain(reconstruction.info),
        "images": save_images(Path(run.out), run.key, round_.truth, reconstruction, scores),
        "device": str(device),
    }


def stopped(run: Run, stack: Any, reason: str) -> dict[str, Any]:
    """The record of a round a defense stopped before the server saw anything: nothing to attack."""
    return {
        **_identity(run, stack),
        "stopped": reason,
        "metrics": {"per_image": [], "success_rate": 0.0},
        "cost": {"round_seconds": 0.0, "attack_seconds": 0.0},
        "attack_info": {},
        "images": {"truth": [], "reconstruction": []},
        "device": run.device,
    }


def _identity(run: Run, stack: Any) -> dict[str, Any]:
    """What every attack record starts with: the run, its DP guarantee, and the version that ran it."""
    epsilons = [(d.name, d.epsilon()) for d in stack if d.epsilon() is not None]
    return {
        "key": run.key,
        "kind": "attack",
        "config": run.config,
        "label": run.label,
        "position": run.position,
        "seed": run.seed,
        "epsilon": epsilons[0][1] if epsilons else None,
        "dp": [{"defense": name, "epsilon": eps, "delta": _delta(stack, name)} for name, eps in epsilons],
        "noise_seeded": bool(epsilons),  # experiments fix the DP noise seed; deployments must not
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


def run_grid(runs: Sequence[Run], out: str | Path, workers: int = 1, backend: str = "process",
             address: str | None = None) -> Outcome:
    """Execute the runs not yet in ``out/results.jsonl``, appending each record as it finishes,
    on ``backend`` (:data:`~gradleak.eval.sweep.backends.BACKENDS`; ``address``: a Ray cluster)."""
    return run_tasks(runs, Path(out) / RESULTS, execute, workers, backend=backends.backend(backend, address))
