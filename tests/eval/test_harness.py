"""The evaluation harness: config validation, resumable results, workers, and surviving SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradleak.cli import main
from gradleak.errors import GradleakError
from gradleak.eval.sweep.plan import load_config, plan
from gradleak.eval.sweep.execute import RESULTS, run_grid
from gradleak.eval.store import ResultStore, read_records, run_key

HERE = Path(__file__).parent
PLUGIN = "harness_plugin"


@pytest.fixture
def plugin(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    return PLUGIN


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- results.jsonl -------------------------------------------------------------------------


def test_run_key_depends_on_the_config_only():
    a = {"attack": "dlg", "seed": 0, "scenario": {"dataset": "faces", "batch_size": 1}}
    same = {"scenario": {"batch_size": 1, "dataset": "faces"}, "seed": 0, "attack": "dlg"}
    assert run_key(a) == run_key(same)
    assert run_key(a) != run_key({**a, "seed": 1})


def test_store_cuts_a_torn_last_line_and_remembers_keys(tmp_path):
    path = tmp_path / RESULTS
    store = ResultStore(path)
    store.append({"key": "a", "psnr": float("inf")})
    store.append({"key": "b", "psnr": 12.5})
    with open(path, "ab") as handle:  # what a SIGKILL in the middle of a write leaves
        handle.write(b'{"key": "c", "ps')
    reopened = ResultStore(path)
    assert reopened.done == {"a", "b"}
    assert path.read_bytes().endswith(b"12.5}\n")
    reopened.append({"key": "c"})
    assert [r["key"] for r in read_records(path)] == ["a", "b", "c"]
    assert read_records(path)[0]["psnr"] == "inf"  # standard JSON, read back with float()


# --- config validation: everything fails before any compute --------------------------------


@pytest.mark.parametrize(
    "toml, named",
    [
        ('attack = ["dlg"]\n', ["attack", "valid keys", "attacks"]),
        ('[[scenario]]\ndataset = "faces"\nbatchsize = 2\n', ["batchsize", "batch_size"]),
        ('attacks = ["no-such-attack"]\n', ["no-such-attack", "test-grey"]),
        ('attacks = ["test-grey:iterations=5"]\n', ["iterations", "pause"]),
        ('attacks = ["test-grey"]\ndefenses = ["no-such-defense"]\n', ["no-such-defense", "choose one of"]),
        ('attacks = ["test-grey"]\n[[scenario]]\ndataset = "nope"\n', ["nope", "faces"]),
        ('attacks = ["test-grey"]\n[[scenario]]\nmodel = "lenet-zhuu"\n', ["lenet-zhuu", "lenet-zhu"]),
        ('attacks = ["test-grey"]\n[[scenario]]\nalgorithm = "fedsgd"\nlocal_steps = 3\n', ["FedSGD", "fedavg"]),
        ('attacks = ["test-grey"]\n[[scenario]]\ndataset = "photos"\ncohort_size = 40\nbatch_size = 2\n',
         ["40 clients", "exceed"]),
        ('attacks = ["test-grey"]\nworkers = 0\n', ["workers"]),
        ('attacks = ["test-grey"]\ndefenses = [3]\n', ["defense stack"]),
    ],
)
def test_bad_configs_fail_before_any_compute(tmp_path, plugin, toml, named):
    out = tmp_path / "out"
    config = write(tmp_path / "sweep.toml", f'out = "{out}"\nplugins = ["{plugin}"]\n' + toml)
    with pytest.raises(GradleakError) as error:
        plan(load_config(config))
    for word in named:
        assert word in str(error.value)
    assert not out.exists()


def test_aggregation_defense_over_one_client_is_rejected(tmp_path, plugin):
    from gradleak.defenses import DEFENSES
    from gradleak.eval.sweep.plan import check_combination
    from gradleak.scenario import Scenario

    aggregators = [name for name in DEFENSES.names() if DEFENSES.get(name).stage == "aggregation"]
    if not aggregators:
        pytest.skip("no secure-aggregation defense is registered yet")
    from gradleak.defenses import build_stack

    with pytest.raises(GradleakError, match="cohort_size"):
        check_combination(Scenario(cohort_size=1), build_stack([aggregators[0]]), "here")
    check_combination(Scenario(cohort_size=2), build_stack([aggregators[0]]), "here")


def test_cli_reports_a_bad_config_in_one_line(tmp_path, plugin, capsys):
    config = write(tmp_path / "sweep.toml", f'plugins = ["{plugin}"]\nattacks = ["test-grey"]\ncolour = "red"\n')
    assert main(["evaluate", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "colour" in err and "valid keys" in err


def test_flags_override_the_file_and_fill_every_scenario(tmp_path, plugin):
    config = write(tmp_path / "sweep.toml", f"""
plugins = ["{plugin}"]
attacks = ["test-grey"]
seeds = [0, 1]
[[scenario]]
dataset = "faces"
[[scenario]]
dataset = "photos"
defenses = ["none"]
""")
    grid = load_config(config, {"seeds": [5]}, {"batch_size": "2"})
    runs = plan(grid)
    assert [r.scenario.batch_size for r in runs] == [2, 2]
    assert [r.seed for r in runs] == [5, 5]
    assert [r.scenario.model_seed for r in runs] == [5, 5]
    assert {r.label["scenario"] for r in runs} == {"faces/lenet-zhu/B=2", "photos/lenet-zhu/B=2"}


# --- running and resuming ------------------------------------------------------------------


def test_rerun_skips_finished_runs_and_records_scores(tmp_path, plugin):
    out = tmp_path / "out"
    grid = load_config(None, {"attacks": ["test-grey"], "seeds": [0, 1, 2], "plugins": [plugin], "out": str(out),
                              "device": "cpu"}, {"dataset": "faces"})
    runs = plan(grid)
    first = run_grid(runs[:2], out)
    assert (first.finished, first.skipped) == (2, 0)
    second = run_grid(runs, out)
    assert (second.finished, second.skipped) == (1, 2)
    records = read_records(out / RESULTS)
    assert sorted(r["key"] for r in records) == sorted(r.key for r in runs)
    record = records[0]
    # the stand-in attack guesses mid-grey: its PSNR is that of a grey image against the face
    truth = record["images"]["truth"][0]
    assert (out / truth).is_file() and (out / record["images"]["reconstruction"][0]).is_file()
    assert 5 < float(record["metrics"]["psnr"]) < 20
    assert record["metrics"]["success_rate"] == 0.0
    assert record["epsilon"] is None and record["noise_seeded"] is False


def _sweep(tmp_path: Path, out: Path, workers: int) -> tuple[list[str], dict[str, str]]:
    config = write(tmp_path / "kill.toml", f"""
out = "{out}"
plugins = ["{PLUGIN}"]
attacks = ["test-grey:pause=1"]
seeds = [0, 1, 2, 3, 4, 5]
workers = {workers}
device = "cpu"
[[scenario]]
dataset = "faces"
""")
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "gradleak", "--quiet", "evaluate", "--config", str(config)]
    return command, env


def test_sigkill_mid_sweep_then_rerun_records_every_run_exactly_once(tmp_path):
    out = tmp_path / "out"
    command, env = _sweep(tmp_path, out, workers=2)
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
        os.killpg(sweep.pid, signal.SIGKILL)  # the whole group: parent and its workers
        sweep.wait()
        sweep.stderr.close()
    done_before = results.read_bytes().count(b"\n")
    assert 2 <= done_before < 6, "the kill must land in the middle of the sweep"

    # the worker count is not part of a run's identity; one worker finishes the rest sooner here
    rerun = subprocess.run([*command, "--workers", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{done_before} already done of 6" in rerun.stdout
    keys = [r["key"] for r in read_records(results)]
    assert len(keys) == 6 and len(set(keys)) == 6
    assert sorted({r["seed"] for r in read_records(results)}) == list(range(6))
    assert not list(out.glob("images/*/*.tmp.png"))
