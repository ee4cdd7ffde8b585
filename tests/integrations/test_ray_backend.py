"""``gradleak evaluate --backend ray``: Ray tasks give the process pool's records, run under the run's
Compute, and survive SIGKILL."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradleak.cli import main
from gradleak.compute import Compute
from gradleak.eval.sweep.backends import backend, gpus_for
from gradleak.eval.sweep.plan import load_config, plan
from gradleak.eval.sweep.execute import RESULTS, run_grid
from gradleak.eval.store import read_records
from gradleak.eval.sweep.tasks import run_tasks

PLUGINS = Path(__file__).parents[1] / "eval"  # harness_plugin: the quick stand-in attack
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (pip install 'gradleak[ray]')")


def _comparable(record: dict) -> dict:
    """A record without what differs between two identical runs: wall-clock times, at any depth."""
    return {k: _comparable(v) if isinstance(v, dict) else v for k, v in record.items()
            if k != "finished" and k != "seconds" and not k.endswith("_seconds")}


def test_missing_ray_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra looks like
    code = main(["--quiet", "evaluate", "--backend", "ray", "--dataset", "faces", "--attack", "dlg:iterations=1",
                 "--device", "cpu", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "pip install 'gradleak[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "out" / RESULTS).exists()


def test_address_without_the_ray_backend_is_refused(capsys, tmp_path):
    code = main(["--quiet", "evaluate", "--address", "ray://head:10001", "--dataset", "faces",
                 "--device", "cpu", "--out", str(tmp_path / "out")])
    assert code == 2 and "--backend ray" in capsys.readouterr().err


def test_gpu_cells_ask_for_a_gpu():
    assert [gpus_for(d, 0) for d in ("cpu", "auto", "cuda", "cuda:1")] == [0, 0, 1, 1]
    assert gpus_for("auto", 2) == 1


@pytest.mark.slow  # starts Ray and a process pool: about a minute on 2 busy cores
@needs_ray
def test_ray_records_equal_the_process_pools(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(PLUGINS))  # Ray's workers inherit it, as the pool's do
    monkeypatch.syspath_prepend(str(PLUGINS))
    records = {}
    for backend in ("process", "ray"):
        out = tmp_path / backend
        grid = load_config(None, {"attacks": ["test-grey", "dlg:iterations=4,restarts=1"], "seeds": [0, 1],
                                  "defenses": ["none", "dp-distributed:epsilon=8,clients=2"],
                                  "plugins": ["harness_plugin"], "out": str(out), "device": "cpu", "workers": 2},
                           {"dataset": "faces", "cohort_size": 2})
        outcome = run_grid(plan(grid), out, workers=2, backend=backend)
        assert outcome.finished == 8 and not outcome.failures
        records[backend] = {r["key"]: _comparable(r) for r in read_records(out / RESULTS)}
    assert sorted(records["ray"]) == sorted(records["process"])
    for key, record in records["process"].items():
        assert records["ray"][key] == record, key
    # not a trivial match: each DLG cell's loss depends on its seeded DP noise and model weights
    losses = {r["attack_info"]["loss"] for r in records["ray"].values() if r["label"]["attack"].startswith("dlg")}
    assert len(losses) == 4


@pytest.mark.slow  # starts Ray twice: 1-2 minutes on 2 busy cores
@needs_ray
def test_sigkill_mid_sweep_on_ray_then_resume_loses_and_repeats_nothing(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(PLUGINS), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "gradleak", "--quiet", "evaluate", "--backend", "ray", "--workers", "2",
               "--plugin", "harness_plugin", "--attack", "test-grey:pause=1", "--seeds", *map(str, range(8)),
               "--dataset", "faces", "--device", "cpu", "--out", str(out)]
    results = out / RESULTS
    sweep = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    deadline = time.monotonic() + 180
    try:
        while not (results.exists() and results.read_bytes().count(b"\n") >= 2):
            assert sweep.poll() is None, sweep.stderr.read().decode()
            assert time.monotonic() < deadline, "the sweep wrote no results in 180 s"
            time.sleep(0.05)
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)  # the driver and the Ray it started
        sweep.wait()
        sweep.stderr.close()
    done_before = results.read_bytes().count(b"\n")
    assert 2 <= done_before < 8, "the kill must land in the middle of the sweep"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{done_before} already done of 8" in rerun.stdout
    records = read_records(results)
    assert sorted(r["seed"] for r in records) == list(range(8))  # each seed once: nothing lost, nothing twice


@pytest.mark.slow  # starts Ray: about 50 s on 2 busy cores
@needs_ray
def test_ray_tasks_run_under_the_runs_compute(tmp_path, monkeypatch):
    # Ray's workers import seen_settings by its module name (tests.eval...): put the checkout on their path
    root = str(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", root)
    monkeypatch.syspath_prepend(root)
    from tests.eval.test_compute_records import Probe, seen_settings
    asked = Compute(threads=2, onednn=not Compute.current().onednn)  # neither Ray's nor the pool's default
    outcome = run_tasks([Probe("a"), Probe("b")], tmp_path / RESULTS, seen_settings, 2, asked, backend=backend("ray"))
    assert outcome.finished == 2, outcome.failures
    for record in read_records(tmp_path / RESULTS):
        assert record["seen"] == {"threads": 2, "onednn": asked.onednn}
        assert record["compute"] == asked.record()
