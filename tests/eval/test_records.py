"""Typed result records read every line of results.jsonl and write it back unchanged: resume
matches records by their ``key``, so the JSON on disk must not move."""

from __future__ import annotations

import json
import math

import pytest

from gradleak.eval.records import (
    AttackRecord, AuditRecord, PropertyRecord, Record, SecaggRecord, UtilityRecord, from_dict, load_records,
)
from gradleak.eval.store import ResultStore
from gradleak.eval.summary import group_runs

STAMP = {"gradleak": "0.1.0", "finished": "2026-12-02T03:00:00+0000"}
IDENTITY = {
    "kind": "attack", "key": "a1", "seed": 0, "position": 3,
    "config": {"scenario": {"batch_size": 2}, "attack": {"name": "dlg", "config": {}}, "defenses": []},
    "label": {"scenario": "faces/lenet", "attack": "dlg", "defense": "none"},
    "epsilon": None, "dp": [], "noise_seeded": False, **STAMP,
}
ATTACK = {
    **IDENTITY,
    "metrics": {"per_image": [{"psnr": "inf", "ssim": 1.0, "mse": 0.0, "label_correct": True}], "success_rate": 1.0},
    "view": {"num_examples": 2, "cohort_size": 1, "aggregate": False, "defenses": [], "refused": {"1": "digest"}},
    "cost": {"round_seconds": 0.1, "attack_seconds": 2.0, "update_bytes": 1024},
    "attack_info": {"evaluations": 300}, "images": {"truth": ["images/a1/truth-0.png"], "reconstruction": []},
    "device": "cpu",
}
STOPPED = {**IDENTITY, "key": "a2", "stopped": "secure aggregation aborted", "metrics": {"per_image": [], "success_rate": 0.0},
           "cost": {"round_seconds": 0.0, "attack_seconds": 0.0}, "attack_info": {},
           "images": {"truth": [], "reconstruction": []}, "device": "auto"}
UTILITY = {
    "key": "u1", "kind": "utility", "config": {"rounds": 5, "defenses": ["none"], "seed": 0},
    "label": {"setting": "digits", "defense": "none", "mechanism": None}, "seed": 0, "accuracy": 0.9,
    "history": [{"round": 5, "accuracy": 0.9}], "epsilon": None, "delta": None, "noise_multiplier": None,
    "noise_seeded": False, "seconds": 3.0, "device": "cpu", **STAMP,
}
SECAGG = {"key": "s1", "kind": "secagg", "clients": 8, "dim": 100, "dropout": 0.0, "active": False, "seed": 0,
          "aborted": False, "correct": True, "bits": 32, "neighbors": None, "threshold": 5, "expansion": 1.7,
          "client_bytes_sent": 900.0, "client_seconds": 0.01, "server_seconds": 0.02, "security": "passive"}
SECAGG_ABORTED = {"key": "s2", "kind": "secagg", "clients": 8, "dim": 100, "dropout": 0.6, "active": False, "seed": 0,
                  "aborted": True, "correct": False, "error": "3 survivors, threshold 5"}
AUDIT = {"key": "d1", "kind": "audit", "defense": "dp-fedavg:epsilon=4", "config": {"trials": 100},
         "label": {"defense": "dp-fedavg:epsilon=4"}, "level": "example", "epsilon_lower": 1.2,
         "epsilon_accountant": 4.0, "delta": 1e-5, "confidence": 0.95, "trials": 100, "tpr": 0.7, "fpr": 0.2,
         "epsilon_cap": 4.6, "auc": 0.8, "advantage": 0.5, "one_run_epsilon_lower": None, "one_run_canaries": 0,
         "one_run_guesses": 0, "one_run_correct": 0, "seconds": 9.0, "noise_seeded": True, **STAMP}
PROPERTY = {"key": "p1", "kind": "property", "defense": "none", "config": {"cohort": 4}, "label": {"defense": "none"},
            "dataset": "faces", "cohort": 4, "auc": 0.97, "auc_low": 0.9, "auc_high": 1.0, "confidence": 0.95,
            "trials": 200, "shadows": 400, "seconds": 5.0, **STAMP}
KINDS = [(ATTACK, AttackRecord), (STOPPED, AttackRecord), (UTILITY, UtilityRecord), (SECAGG, SecaggRecord),
         (SECAGG_ABORTED, SecaggRecord), (AUDIT, AuditRecord), (PROPERTY, PropertyRecord)]


@pytest.mark.parametrize(("data", "cls"), KINDS, ids=[d["key"] for d, _ in KINDS])
def test_every_kind_round_trips_to_the_same_json(data, cls):
    record = from_dict(data)
    assert type(record) is cls
    assert json.dumps(record.to_dict(), sort_keys=True) == json.dumps(data, sort_keys=True)


def test_typed_fields_read_what_the_file_holds():
    attack, stopped = from_dict(ATTACK), from_dict(STOPPED)
    assert (attack.scenario, attack.defense, attack.position, attack.batch_size) == ("faces/lenet", "none", 3, 2)
    assert attack.refused == {"1": "digest"} and attack.stopped is None
    assert stopped.stopped == "secure aggregation aborted" and stopped.view is None and stopped.refused == {}
    assert from_dict(SECAGG).extra["security"] == "passive"  # keys the class does not name are kept
    assert from_dict(SECAGG_ABORTED).error.startswith("3 survivors")
    assert from_dict(AUDIT).one_run_epsilon_lower is None and from_dict(UTILITY).mechanism is None


def test_an_unknown_kind_stays_a_plain_record_and_round_trips():
    data = {"key": "x", "kind": "future", "payload": [1, 2]}
    record = from_dict(data)
    assert type(record) is Record and record.to_dict() == data


def test_an_old_record_without_newer_keys_loads_and_is_written_back_as_it_was(tmp_path):
    old = {k: v for k, v in ATTACK.items() if k not in ("position", "dp", "noise_seeded")}
    old["view"] = {k: v for k, v in ATTACK["view"].items() if k != "refused"}
    old["config"] = {k: v for k, v in ATTACK["config"].items() if k != "server"}
    store = ResultStore(tmp_path / "results.jsonl")
    store.append(old)
    store.append(STOPPED)

    record, stopped = load_records([tmp_path / "results.jsonl"])
    assert isinstance(record, AttackRecord) and record.position == 0 and record.dp == [] and record.refused == {}
    assert record.images["truth"] == [str(tmp_path.resolve() / "images/a1/truth-0.png")]  # made absolute
    assert {k: v for k, v in record.to_dict().items() if k != "images"} == {k: v for k, v in old.items() if k != "images"}
    (group,) = group_runs([record, stopped])
    assert group.stopped == 1 and math.isinf(group.psnr.median)
    assert group.success_rate() == pytest.approx(1 / 3)  # one perfect image of three (the stopped batch of 2 missed)


def test_records_the_producers_write_today_round_trip_through_the_file(tmp_path):
    from gradleak.eval.secagg_costs import CostPoint, measure
    from gradleak.eval.sweep.execute import execute
    from gradleak.eval.sweep.plan import parse_config, plan

    runs = plan(parse_config({"out": str(tmp_path), "attacks": ["idlg:iterations=5"], "defenses": ["secagg"],
                              "servers": ["honest", "inconsistent:target=0"],
                              "scenario": [{"dataset": "faces", "cohort_size": 3}]}, "test"))
    store = ResultStore(tmp_path / "results.jsonl")
    for record in [*map(execute, runs), measure(CostPoint(clients=4, dim=8)), measure(CostPoint(4, 8, dropout=0.75))]:
        store.append(record)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    records = [from_dict(json.loads(line)) for line in lines]
    assert [type(r) for r in records] == [AttackRecord, AttackRecord, SecaggRecord, SecaggRecord]
    assert records[1].stopped and records[3].aborted  # a stopped round and an aborted session among them
    assert [json.dumps(r.to_dict(), sort_keys=True, allow_nan=False) for r in records] == lines
