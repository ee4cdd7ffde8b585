"""``secagg`` in a federated round and on the command line."""

import json

import numpy as np
import pytest
import torch

from gradleak.cli import main
from gradleak.defenses import build_stack
from gradleak.defenses.plain import weighted_mean
from gradleak.defenses.secagg.messages import MaskedInput
from gradleak.federated import Client, run_round
from gradleak.models import build
from gradleak.threat import Normalization

NORM = Normalization((0.5,), (0.25,))


def cohort(sizes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [Client(k, torch.rand(n, 1, 8, 8, generator=generator), torch.randint(0, 3, (n,), generator=generator))
            for k, n in enumerate(sizes)]


@pytest.mark.parametrize("spec", ["secagg:seed=1", "secagg:seed=1,neighbors=4,threshold=2,dropout=0.34,active=false"])
def test_the_server_sees_only_the_weighted_mean_of_the_contributors(spec):
    model = build("mlp", (1, 8, 8), 3, seed=0)
    clients = cohort([1, 2, 3, 2, 1, 3])
    stack = build_stack([spec])
    round_ = run_round(model, NORM, clients, 3, defenses=stack)
    plain = run_round(model, NORM, clients, 3)  # the same uploads, seen in the clear

    uploads = [c.upload(model, NORM, plain.view.local, build_stack([]), torch.Generator()) for c in clients]
    contributors = round_.truth.client_ids
    expected = weighted_mean([uploads[k] for k in contributors], [len(clients[k]) for k in contributors])
    value_bits = round_.cost["value_bits"]
    step = 8.0 / (2 ** (value_bits - 1) - 1)
    for got, want in zip(round_.view.update, expected):
        assert got.shape == want.shape and float((got - want).abs().max()) <= step

    view = round_.view
    assert view.aggregate and view.cohort_size == len(contributors) == round_.cost["survivors"]
    assert view.num_examples == sum(len(clients[k]) for k in contributors) == len(round_.truth.labels)
    if "dropout" in spec:
        assert len(contributors) == 4 and round_.cost["dropped"] == 2
    assert len(view.masked_uploads) == len(contributors)
    assert all(isinstance(m, MaskedInput) and m.vector.dtype == np.uint32 for m in view.masked_uploads)
    assert round_.cost["expansion"] > 1 and round_.cost["server_seconds"] > 0


def test_the_aggregate_is_seeded_by_the_round():
    model = build("mlp", (1, 8, 8), 3, seed=0)
    clients = cohort([2, 2, 2])
    first, second = (run_round(model, NORM, clients, 3, defenses=build_stack(["secagg"]), noise_seed=5) for _ in "ab")
    assert all(torch.equal(a, b) for a, b in zip(first.view.update, second.view.update))


def test_cli_checks_the_sum_and_reports_cost_as_json(capsys):
    assert main(["secagg", "--clients", "12", "--dim", "300", "--dropout", "0.25", "--neighbors", "6", "--no-active", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["correct"] is True and report["survivors"] == 9 and report["neighbors"] == 6
    assert report["resists_lying_server"] is False and "use active mode" in report["security"]
    for key in ("expansion", "client_bytes_sent", "server_seconds", "client_seconds"):
        assert report[key] > 0


def test_cli_prints_a_cost_table_and_errors_on_one_line(capsys):
    assert main(["secagg", "--clients", "5", "--dim", "64", "--active"]) == 0
    out = capsys.readouterr().out
    assert "ConsistencyCheck" in out and "expansion" in out and "equals the plaintext sum" in out
    assert main(["secagg", "--clients", "5", "--dim", "8", "--threshold", "9"]) == 2
    assert "threshold must be between" in capsys.readouterr().err
