"""A planned run carries what its worker builds (names and typed configs), so nothing after the
plan parses a spec string, and what it builds is what the spec said."""

from __future__ import annotations

import pickle

from gradleak.defenses import build_stack
from gradleak.eval.sweep.plan import parse_config, plan


def test_a_run_builds_the_stack_attack_and_server_its_specs_name(tmp_path):
    runs = plan(parse_config({
        "out": str(tmp_path), "seeds": [0, 3], "attacks": ["idlg:iterations=5"],
        "defenses": ["none", "prune:ratio=0.5 + dp-fedavg:epsilon=3"], "servers": ["honest", "inconsistent:target=1"],
        "scenario": [{"dataset": "faces", "cohort_size": 2}],
    }, "test"))
    assert len(runs) == 8
    for run in map(lambda r: pickle.loads(pickle.dumps(r)), runs):  # as a worker receives it
        specs = [s.strip() for s in run.label["defense"].split("+")]
        stack, expected = run.build_stack(), build_stack(specs)
        assert [(d.name, d.config) for d in stack] == [(d.name, d.config) for d in expected]
        attack = run.build_attack()
        assert (attack.name, attack.config.iterations, attack.config.seed) == ("idlg", 5, run.seed)
        server = run.build_server()
        assert server.name == run.config.get("server", {"name": "honest"})["name"]
    assert {len(r.defenses) for r in runs} == {0, 2}  # "none" is no component at all
