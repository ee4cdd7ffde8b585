"""Malicious servers: what they plant, and that the attacks read it back through secure aggregation."""

import pytest
import torch

from gradleak.attacks import build_attack
from gradleak.defenses import build_stack
from gradleak.errors import GradleakError
from gradleak.eval.metrics import score
from gradleak.federated import Client, run_round
from gradleak.models import build
from gradleak.scenario import Scenario, build_round
from gradleak.servers import build_server
from gradleak.threat import Normalization

NORM = Normalization((0.5,), (0.25,))


def cohort(clients, per_client=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [Client(k, torch.rand(per_client, 1, 8, 8, generator=generator), torch.randint(0, 3, (per_client,), generator=generator))
            for k in range(clients)]


@pytest.mark.parametrize("target", [0, 5])
def test_inconsistency_makes_the_secure_aggregate_the_targets_update(target):
    model = build("mlp", (1, 8, 8), 3, seed=0)
    clients = cohort(8)
    round_ = run_round(model, NORM, clients, 3, defenses=build_stack(["secagg:seed=1,bind_model=false"]),
                       server=build_server(f"inconsistent:target={target}"))
    alone = clients[target].upload(model, NORM, round_.view.local, build_stack([]), torch.Generator())
    hidden = set(round_.view.secrets["hidden"])
    names = [n for n, _ in model.named_parameters()]
    expected = [u for n, u in zip(names, alone) if n not in hidden]
    step = 8.0 / (2 ** (round_.cost["value_bits"] - 1) - 1)
    assert hidden == {"net.5.bias"}  # only the classifier's bias moves under the dead copy
    assert len(round_.view.update) == len(expected) == len(names) - 1
    for got, want in zip(round_.view.update, expected):
        assert float((got - want).abs().max()) <= step
    assert round_.truth.client_ids == (target,) and round_.view.cohort_size == 8


def test_an_honest_secure_aggregate_is_not_one_clients_update():
    model = build("mlp", (1, 8, 8), 3, seed=0)
    clients = cohort(8)
    round_ = run_round(model, NORM, clients, 3, defenses=build_stack(["secagg:seed=1"]))
    alone = clients[0].upload(model, NORM, round_.view.local, build_stack([]), torch.Generator())
    assert float((round_.view.update[0] * 8 - alone[0]).abs().max()) > 1e-3


@pytest.mark.slow  # about 15 s on 2 cores
def test_idlg_recovers_a_face_through_secure_aggregation_of_8_clients():
    scenario = Scenario(dataset="faces", cohort_size=8)
    round_ = build_round(scenario, build_stack(["secagg:bind_model=false"]), server=build_server("inconsistent:target=0"))
    reconstruction = build_attack("idlg:iterations=300").reconstruct(round_.view)
    assert score(reconstruction, round_.truth).mean_psnr >= 40


def test_an_impossible_target_or_model_is_refused():
    with pytest.raises(GradleakError, match="target 9"):
        run_round(build("mlp", (1, 8, 8), 3, seed=0), NORM, cohort(4), 3, server=build_server("inconsistent:target=9"))
    with pytest.raises(GradleakError, match="unknown server"):
        build_server("evil")


def exact_images(spec, model, batch_size=16, cohort_size=1, defenses=(), dataset="digits"):
    """How many victim images the analytic attack gets back at >= 60 dB, and how many there are."""
    scenario = Scenario(dataset=dataset, model=model, batch_size=batch_size, cohort_size=cohort_size)
    round_ = build_round(scenario, build_stack(list(defenses)), server=build_server(spec))
    scores = score(build_attack("analytic").reconstruct(round_.view), round_.truth)
    return sum(p >= 60 for p in scores.psnr), len(scores.psnr)


def test_imprint_bins_give_back_most_of_a_batch_where_the_honest_server_gets_none():
    # 16 images in 64 equal-mass bins: each alone with probability (63/64)^15 = 0.79.
    exact, total = exact_images("imprint:bins=64", "mlp")
    honest, _ = exact_images("honest", "mlp")
    assert exact >= 9 and honest <= 2, (exact, honest, total)


def test_imprint_reads_the_secure_aggregate_of_4_clients():
    exact, total = exact_images("imprint:bins=64", "lenet-zhu", batch_size=4, cohort_size=4, defenses=["secagg:seed=1"])
    assert total == 16 and exact >= 9


def test_one_shot_bins_catch_single_images_in_an_aggregate_of_256():
    # 16 bins of mass 1/256: each holds exactly one image with probability ~1/e; equal-mass bins hold ~16.
    batch = dict(batch_size=64, cohort_size=4, defenses=["secagg:seed=1"])
    exact, total = exact_images("imprint:bins=16,one_shot=true,aggregate=256,statistic=random", "lenet-zhu", **batch)
    spread, _ = exact_images("imprint:bins=16,statistic=random", "lenet-zhu", **batch)
    assert total == 256 and exact >= 2 and spread == 0, (exact, spread)


def test_imprint_plants_an_ascending_block_and_declares_it():
    round_ = build_round(Scenario(dataset="digits", model="mlp", batch_size=2), server=build_server("imprint:bins=32"))
    bins = torch.tensor(round_.view.secrets["bins"])
    rows = dict(round_.view.model.named_modules())[round_.view.secrets["layer"]]
    assert len(bins) == 32 and bool((bins[1:] > bins[:-1]).all())
    assert torch.allclose(-rows.bias / rows.weight[:, 0] / rows.in_features, bins, rtol=1e-4)


def test_trap_weights_beat_the_honest_server_on_the_same_relu_layer():
    model = "mlp:activation=relu,hidden=1024/64"
    exact, total = exact_images("trap:scale=0.9", model, batch_size=32)
    honest, _ = exact_images("honest", model, batch_size=32)
    assert exact >= 14 and honest <= exact / 2, (exact, honest, total)


@pytest.mark.parametrize("spec, model, message", [
    ("imprint:bins=0", "mlp", "bins"),
    ("imprint:bins=8,one_shot=true,aggregate=8", "mlp", "fewer bins"),
    ("trap", "lenet-zhu", "linear on the pixels"),
    ("trap", "mlp", "ReLU after the first layer"),
])
def test_impossible_imprint_or_trap_specs_are_refused(spec, model, message):
    with pytest.raises(GradleakError, match=message):
        build_round(Scenario(dataset="digits", model=model, batch_size=2), server=build_server(spec))
