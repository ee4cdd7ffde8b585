"""Client-side vetting: it refuses the inconsistent, imprint and trap models and never an honest one."""

import copy
import json

import pytest
import torch
from torch import nn

from gradleak.cli import main
from gradleak.data import load_dataset
from gradleak.defenses import build_defense, build_stack
from gradleak.errors import GradleakError
from gradleak.federated import Client, run_round
from gradleak.models import build
from gradleak.servers import build_server
from gradleak.threat import Normalization
from gradleak.training import train

NORM = Normalization((0.5,), (0.25,))
VET = build_defense("vet")


def cohort(clients, per_client=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [Client(k, torch.rand(per_client, 1, 8, 8, generator=generator), torch.randint(0, 3, (per_client,), generator=generator))
            for k in range(clients)]


def batch(dataset, n, seed):
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    return dataset.get(indices)


@pytest.mark.parametrize("model_name", ["mlp", "lenet-zhu"])
def test_every_non_target_client_refuses_the_inconsistent_servers_silenced_model(model_name):
    model = build(model_name, (1, 8, 8), 3, seed=0)
    server = build_server("inconsistent:target=0")
    round_ = run_round(model, NORM, cohort(8), 3, defenses=build_stack(["vet"]), server=server)
    assert set(round_.refused) == set(range(1, 8))
    assert all("no gradient" in reason for reason in round_.refused.values())
    # under secure aggregation the target would be alone in the sum: the round stops instead
    with pytest.raises(GradleakError, match="7 of 8 clients refused .*vet: .*only client 0 left"):
        run_round(model, NORM, cohort(8), 3, defenses=build_stack(["vet", "secagg:seed=1"]), server=server)


@pytest.mark.parametrize("spec", ["convnet:width=8,norm=group", "resnet20"])
def test_a_bias_an_honest_norm_layer_cancels_is_not_a_dead_layer(spec):
    # GroupNorm with one channel per group removes the conv bias before it: its gradient is 0
    model = build(spec, (3, 32, 32), 10, seed=0).double()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert VET.on_receive(model, model, x) is None


def test_a_refusing_client_is_left_out_of_the_secure_aggregate():
    model = build("mlp", (1, 8, 8), 3, seed=0)
    clients = cohort(4)
    dead = copy.deepcopy(model)
    with torch.no_grad():
        dead.net[3].weight.zero_()
        dead.net[3].bias.fill_(-1e4)

    class OneDead(type(build_server("honest"))):
        def models(self, global_model, num_clients, context):
            return [dead if k == 3 else global_model for k in range(num_clients)]

    round_ = run_round(model, NORM, clients, 3, defenses=build_stack(["vet", "secagg:seed=1"]), server=OneDead())
    survivors = run_round(model, NORM, clients[:3], 3, defenses=build_stack(["secagg:seed=1"]))
    assert list(round_.refused) == [3] and round_.view.cohort_size == 3
    assert round_.truth.client_ids == (0, 1, 2)
    for got, want in zip(round_.view.update, survivors.view.update):
        assert torch.allclose(got, want, atol=1e-6)


def test_the_attack_commands_json_and_error_name_the_refusing_clients(capsys, tmp_path):
    argv = ["--quiet", "attack", "--attack", "idlg:iterations=2", "--dataset", "faces", "--model", "mlp", "--cohort-size", "4",
            "--server", "inconsistent:target=0", "--device", "cpu", "--out", str(tmp_path), "--json"]
    assert main([*argv, "--defense", "vet"]) == 0
    refused = json.loads(capsys.readouterr().out)["refused"]
    assert sorted(refused) == ["1", "2", "3"] and all(why.startswith("vet: ") for why in refused.values())
    assert main([*argv, "--defense", "vet", "--defense", "secagg"]) == 2
    assert "3 of 4 clients refused" in capsys.readouterr().err


def imprint_block(public, bins):
    """Robbing the Fed's block: ``bins`` rows measuring brightness, biases at its quantiles."""
    d = public[0].numel()
    brightness = torch.full((d,), 1 / d)
    cuts = torch.quantile(public.flatten(1) @ brightness, torch.linspace(0, 1, bins + 2)[1:-1])
    linear = nn.Linear(d, bins)
    with torch.no_grad():
        linear.weight.copy_(brightness.expand(bins, d))
        linear.bias.copy_(-cuts)
    return linear


def test_vet_refuses_an_inserted_imprint_block_and_the_same_rows_in_place():
    faces = load_dataset("faces")
    public, _ = batch(faces, 64, seed=1)
    x = faces.normalization.normalize(batch(faces, 8, seed=2)[0])
    declared = build("mlp:activation=relu", faces.shape, 2, seed=0)
    block = imprint_block(faces.normalization.normalize(public), bins=128)
    inserted = nn.Sequential(nn.Flatten(), block, nn.ReLU(), nn.Linear(128, 1024), nn.Unflatten(1, faces.shape), copy.deepcopy(declared))
    assert "architecture differs" in VET.on_receive(inserted, declared, x)
    # the same rows written over the declared first layer: the architecture no longer tells
    in_place = copy.deepcopy(declared)
    in_place.net[1].load_state_dict(imprint_block(faces.normalization.normalize(public), bins=256).state_dict())
    assert "copy one direction" in VET.on_receive(in_place, declared, x)


def trap_rows(layer, normalization, channels, scale=0.95, sigma=0.5, seed=0):
    """Boenisch et al.'s trap weights on [0, 1] pixels (half the entries -|N(0, sigma)|, the rest
    +|N(0, sigma)| times ``scale``), folded into the layer that reads normalised inputs."""
    generator = torch.Generator().manual_seed(seed)
    rows, d = layer.weight.shape
    w = torch.randn(rows, d, generator=generator).abs() * sigma
    negative = torch.rand(rows, d, generator=generator).argsort(1) < d // 2
    w = torch.where(negative, -w, scale * w)
    std = torch.tensor(normalization.std).repeat_interleave(d // channels)
    mean = torch.tensor(normalization.mean).repeat_interleave(d // channels)
    with torch.no_grad():
        layer.weight.copy_(w * std)
        layer.bias.copy_(w @ mean)


@pytest.mark.parametrize("name", ["faces", "digits", "photos"])
def test_vet_refuses_trap_weights_on_a_batch_large_enough_to_judge(name):
    dataset = load_dataset(name)
    declared = build("mlp:activation=relu", dataset.shape, dataset.num_classes, seed=0)
    trapped = copy.deepcopy(declared)
    trap_rows(trapped.net[1], dataset.normalization, dataset.shape[0])
    for n in (8, 64):
        x = dataset.normalization.normalize(batch(dataset, n, seed=n)[0])
        assert "trap weights" in VET.on_receive(trapped, declared, x)
    assert VET.on_receive(trapped, declared, x[:4]) is None  # too few examples to tell rare rows


def honest_session(name, model_name, trained_epochs, rounds, clients=4, per_client=8):
    """FedSGD rounds with ``vet`` on fresh random batches, the model moving each round: refusals."""
    dataset = load_dataset(name)
    model = build(model_name, dataset.shape, dataset.num_classes, seed=0)
    train(model, dataset, trained_epochs)
    stack = build_stack(["vet"])
    refused = {}
    for r in range(rounds):
        images, labels = batch(dataset, clients * per_client, seed=r)
        cohort_ = [Client(k, images[k * per_client:(k + 1) * per_client], labels[k * per_client:(k + 1) * per_client]) for k in range(clients)]
        round_ = run_round(model, dataset.normalization, cohort_, dataset.num_classes, defenses=stack)
        refused.update({(r, k): why for k, why in round_.refused.items()})
        with torch.no_grad():
            for p, g in zip(model.parameters(), round_.released):
                p -= 0.1 * g
    return refused


MODELS = ("lenet-zhu", "mlp:activation=relu")  # the default model, and one whose first layer is linear


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("name", ["faces", "digits", "photos"])
def test_no_false_alarm_over_10_honest_rounds(name, model_name):
    assert honest_session(name, model_name, trained_epochs=0, rounds=10, clients=2) == {}


@pytest.mark.slow  # about 6 min on 2 cores; results in docs/lab/vet.md
@pytest.mark.parametrize("epochs", [0, 0.5])
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("name", ["faces", "digits", "photos"])
def test_no_false_alarm_over_50_honest_rounds(name, model_name, epochs, request):
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("slow reproduction: run with -m slow")
    assert honest_session(name, model_name, epochs, rounds=50) == {}


def test_the_report_lists_the_runs_with_refusals():
    from gradleak.eval.records import AttackRecord
    from gradleak.eval.report import refusals_text

    label = {"scenario": "faces/b1", "defense": "vet", "attack": "idlg"}
    records = [AttackRecord.from_dict(r) for r in (
        {"key": "a", "label": label, "seed": 0, "view": {"refused": {"2": "vet: weight net.1.weight gets no gradient"}}},
        {"key": "b", "label": label, "seed": 1, "view": {"refused": {}}}, {"key": "c", "label": label, "seed": 2})]
    text = refusals_text(records)
    assert "seed 0: client 2 refused (vet: weight net.1.weight" in text and "seed 1" not in text
    assert refusals_text(records[1:]) == ""


@pytest.mark.parametrize("server,model", [("imprint:bins=64", "mlp"), ("trap", "mlp:activation=relu,hidden=1024/64")])
def test_vet_stops_the_imprint_and_trap_servers_models(server, model):
    from gradleak.scenario import Scenario, build_round

    scenario = Scenario(dataset="digits", model=model, batch_size=8, cohort_size=4)
    attacked = build_round(scenario, build_stack(["secagg:seed=1"]), server=build_server(server))
    assert attacked.view.secrets  # without vet the server's plant is in place
    with pytest.raises(GradleakError, match="4 of 4 clients refused .*vet: "):
        build_round(scenario, build_stack(["vet", "secagg:seed=1"]), server=build_server(server))
