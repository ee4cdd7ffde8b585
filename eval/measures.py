"""Leakage beyond one image, as result records: property-inference AUC, membership advantage and
empirical ε from audits, stored in ``results.jsonl`` beside the attack runs so a report shows
them next to PSNR and SSIM.

A record is keyed by its measure and configuration: measuring again into the same results file
reuses the stored record instead of recomputing it (a sweep of audits resumes like any other).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import gradleak
from gradleak.eval.metrics import jsonable
from gradleak.eval.store import RESULTS, ResultStore, run_key



def measure_once(out: str | Path, kind: str, defense: str, config: Any, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The record of ``kind`` for ``config`` from ``out/results.jsonl``, computing and appending it if missing."""
    path = Path(out) / RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    identity = {"kind": kind, "defense": defense, "config": jsonable(dataclasses.asdict(config))}
    key = run_key(identity)
    store = ResultStore(path)
    if key in store:
        return next(r for r in store.records if r.get("key") == key)
    record = {"key": key, **identity, "label": {"defense": defense}, **jsonable(compute()),
              "gradleak": gradleak.__version__, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    store.append(record)
    return record
