"""Utility: FedAvg under a defense learns (or does not), and DP mechanisms get the real schedule."""

from __future__ import annotations

import pytest

from gradleak.cli import main
from gradleak.errors import GradleakError
from gradleak.eval.store import read_records
from gradleak.eval.utility import UtilityConfig, plan_utility, schedule, train_federated

SMALL = UtilityConfig(clients=20, cohort=5, rounds=12, local_steps=3)


def test_dp_mechanisms_are_scheduled_for_the_training_they_protect():
    config = UtilityConfig(clients=100, cohort=10, rounds=30, local_steps=5)
    assert schedule("dp-fedavg:epsilon=3", config) == "dp-fedavg:epsilon=3,steps=30,sample_rate=0.1,clients=10"
    assert schedule("dp-sgd:epsilon=3,sample_rate=0.5", config) == "dp-sgd:epsilon=3,sample_rate=0.5,steps=150"
    assert schedule("dp-fedavg:epsilon=3,steps=7", config) == "dp-fedavg:epsilon=3,steps=7,sample_rate=0.1,clients=10"
    assert schedule("dp-distributed:epsilon=3", config).endswith("clients=10")
    assert schedule("prune:ratio=0.9", config) == "prune:ratio=0.9"


def test_fedavg_learns_and_strong_client_level_dp_costs_accuracy():
    clean, private = plan_utility(SMALL, [("none",), ("dp-fedavg:epsilon=1",)], [0], device="cpu")
    clean_record, private_record = train_federated(clean), train_federated(private)
    assert clean_record["accuracy"] > 0.6  # 10 classes: chance is 0.1
    assert private_record["accuracy"] < clean_record["accuracy"] - 0.2
    assert private_record["epsilon"] == pytest.approx(1.0, rel=0.01)
    assert private_record["noise_multiplier"] > 1
    assert private_record["noise_seeded"] is True


def test_bad_settings_fail_before_training():
    with pytest.raises(GradleakError, match="cohort"):
        UtilityConfig(clients=5, cohort=6)
    with pytest.raises(GradleakError, match="no-such"):
        plan_utility(SMALL, [("no-such",)], [0])
    with pytest.raises(GradleakError, match="epsilon"):
        plan_utility(SMALL, [("dp-fedavg:epsilon=-1",)], [0])


def test_utility_command_is_resumable(tmp_path, capsys):
    argv = ["utility", "--clients", "10", "--cohort", "5", "--rounds", "2", "--local-steps", "1",
            "--epsilons", "8", "--out", str(tmp_path), "--device", "cpu"]
    assert main(argv) == 0
    assert "2 run(s) finished of 2" in capsys.readouterr().out
    assert main(argv) == 0
    assert "2 already done of 2" in capsys.readouterr().out
    records = read_records(tmp_path / "utility.jsonl")
    assert [r["label"]["defense"] for r in records] == ["none", "dp-fedavg:epsilon=8"]
