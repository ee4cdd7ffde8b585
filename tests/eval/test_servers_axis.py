"""Grids take the server as an axis: malicious rows beside honest ones, honest keys unchanged,
and a round that a defense stops is recorded as stopped (nothing recovered), not as a failure."""

from __future__ import annotations

import pytest

from gradleak.errors import GradleakError
from gradleak.eval.sweep.plan import parse_config, plan
from gradleak.eval.sweep.execute import execute
from gradleak.eval.summary import group_runs, table_rows

SCENARIO = {"dataset": "faces", "cohort_size": 3}


def grid(tmp_path, **extra):
    return plan(parse_config({"out": str(tmp_path), "attacks": ["idlg:iterations=5"], "defenses": ["secagg"],
                              "scenario": [SCENARIO], **extra}, "test"))


def test_servers_multiply_the_grid_and_leave_the_honest_runs_keys_alone(tmp_path):
    honest = grid(tmp_path)
    both = grid(tmp_path, servers=["honest", "inconsistent:target=1"])
    assert len(both) == 2 * len(honest)
    assert [r.key for r in both if r.server.name == "honest"] == [r.key for r in honest]
    malicious = [r for r in both if r.server.name != "honest"]
    assert all(r.label["scenario"].endswith("inconsistent:target=1 server") for r in malicious)
    assert all(r.config["server"]["config"]["target"] == 1 for r in malicious)
    assert not {r.key for r in malicious} & {r.key for r in honest}


def test_a_bad_server_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(GradleakError, match="server 'nosuch'.*honest"):
        grid(tmp_path, servers=["nosuch"])
    with pytest.raises(GradleakError, match="server 'inconsistent:depth=2'"):
        grid(tmp_path, servers=["inconsistent:depth=2"])


def test_bound_secure_aggregation_stops_the_inconsistent_server_and_the_table_says_so(tmp_path):
    (run,) = grid(tmp_path, servers=["inconsistent:target=0"])
    record = execute(run)
    assert "the server is inconsistent" in record["stopped"]
    (group,) = group_runs([record])
    assert group.stopped == 1 and group.success_rate() == 0.0
    (row,) = table_rows([group])
    assert "stopped" in row


def test_unbound_secure_aggregation_hands_the_attack_the_targets_update(tmp_path):
    (run,) = plan(parse_config({"out": str(tmp_path), "attacks": ["idlg:iterations=5"],
                                "defenses": ["secagg:bind_model=false"], "servers": ["inconsistent:target=0"],
                                "scenario": [SCENARIO]}, "test"))
    record = execute(run)
    assert "stopped" not in record
    assert record["view"]["num_examples"] == 1  # the target's one image, not the cohort's three
