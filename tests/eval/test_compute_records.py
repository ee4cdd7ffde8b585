"""The runner runs every task under an explicit Compute (in spawned workers when it differs from the
caller's) and records it; it leaves the caller's settings as they were."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from gradleak.compute import Compute
from gradleak.eval.sweep.tasks import run_tasks


@dataclass(frozen=True)
class Probe:
    key: str
    plugins: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return self.key


def seen_settings(task: Probe) -> dict:
    seen = {"threads": torch.get_num_threads(), "onednn": bool(torch.backends.mkldnn.enabled)}
    return {"key": task.key, "seen": seen}


@pytest.mark.parametrize("workers", [1, 2])
def test_tasks_run_under_the_given_compute_and_records_carry_it(tmp_path, workers, monkeypatch):
    # Spawned workers unpickle seen_settings by its module name, tests.eval...: the checkout must be on
    # the path they copy from this process (``pytest`` alone, unlike ``python -m pytest``, leaves it off).
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    caller = Compute.current()
    asked = Compute(threads=2, onednn=not caller.onednn)
    outcome = run_tasks([Probe("a"), Probe("b")], tmp_path / "results.jsonl", seen_settings, workers, asked)
    assert outcome.finished == 2 and Compute.current() == caller
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    for record in records:
        assert record["seen"] == {"threads": 2, "onednn": asked.onednn}
        assert record["compute"] == asked.record()
