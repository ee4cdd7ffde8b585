"""A curious server as a Flower Strategy: its attack matches gradleak's own run, and SecAgg+ hides all but the aggregate."""

from __future__ import annotations

import math

import pytest

flwr = pytest.importorskip("flwr", reason="Flower is not installed (pip install 'gradleak[flower]')")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flwr.app import ArrayRecord  # noqa: E402

from gradleak.eval.sweep.plan import seeded_attack  # noqa: E402
from gradleak.eval.metrics import score  # noqa: E402
from gradleak.eval.store import read_records  # noqa: E402
from gradleak.federated import Client, run_round  # noqa: E402
from gradleak.flower import CuriousFedAvg, CuriousServer, InProcessGrid  # noqa: E402
from gradleak.threat import LocalTraining, Truth  # noqa: E402

import flower_app as app  # noqa: E402

NODES, ROUNDS, SEED = 4, 2, 0
ATTACK = "idlg:iterations=100,restarts=1"
LOCAL = LocalTraining("fedavg", app.LOCAL_STEPS, app.LEARNING_RATE)


def _truth(node_ids: tuple[int, ...]) -> Truth:
    parts = [app.partition(InProcessGrid.partition(n)) for n in node_ids]
    return Truth(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))


def _server(out) -> CuriousServer:
    data = app.dataset()
    return CuriousServer(app.global_model(), data.normalization, data.shape, data.num_classes, LOCAL,
                         attack=ATTACK, out=out, seed=SEED, truth=_truth)


def _own_psnr(sent: list[np.ndarray], victim: int) -> float:
    """gradleak's own round on the same global model and data: the victim's update, the same seeded attack."""
    data = app.dataset()
    model = app.global_model()
    model.load_state_dict({n: torch.from_numpy(a.copy()) for n, a in zip(model.state_dict(), sent)})
    clients = [Client(k, *app.partition(k)) for k in range(NODES)]
    round_ = run_round(model, data.normalization, clients, data.num_classes, local=LOCAL, victim=victim)
    reconstruction = seeded_attack(ATTACK, SEED, "attack").reconstruct(round_.view)
    return score(reconstruction, round_.truth).summary()["psnr"]


def test_curious_fedavg_attacks_every_reply_like_gradleak_does(tmp_path):
    strategy = CuriousFedAvg(_server(tmp_path), fraction_evaluate=0.0, min_available_nodes=NODES)
    grid = InProcessGrid(app.make_app(), NODES)
    strategy.start(grid, ArrayRecord(app.global_model().state_dict()), num_rounds=ROUNDS)

    records = read_records(tmp_path / "results.jsonl")
    assert len(records) == NODES * ROUNDS and all(r["kind"] == "attack" for r in records)
    assert not any(r["view"]["aggregate"] for r in records)
    # the second round's global model is FedAvg's aggregate, not the first: the strategy aggregated
    assert not all(np.array_equal(a, b) for a, b in zip(strategy.sent[1], strategy.sent[2]))
    psnrs = []
    for record in records:
        server_round, (node,) = record["flower"]["round"], record["flower"]["node_ids"]
        flower = record["metrics"]["psnr"]
        own = _own_psnr(strategy.sent[server_round], InProcessGrid.partition(node))
        assert abs(flower - own) < 0.5 or (math.isinf(flower) and math.isinf(own)), (server_round, node, flower, own)
        psnrs.append(flower)
    # the attack really works here (a grey guess scores about 15 dB), so agreeing is not agreeing on noise
    assert sum(psnrs) / len(psnrs) > 18


def test_under_secaggplus_the_strategy_sees_only_the_aggregate(tmp_path):
    from flwr.client.mod import secaggplus_mod
    from flwr.server.workflow import SecAggPlusWorkflow

    from gradleak.flower import CuriousLegacyFedAvg

    initial = [t.numpy() for t in app.global_model().state_dict().values()]
    uploads: dict[int, list[np.ndarray]] = {}
    observed = []

    class Recording(CuriousServer):
        def observe(self, server_round, node_ids, sent, received, num_examples, aggregate):
            observed.append((node_ids, [np.asarray(r) - s for r, s in zip(received, sent)], aggregate))
            return super().observe(server_round, node_ids, sent, received, num_examples, aggregate)

    data = app.dataset()
    server = Recording(app.global_model(), data.normalization, data.shape, data.num_classes, LOCAL,
                       attack="idlg:iterations=2,restarts=1", out=tmp_path, seed=SEED, truth=_truth)
    grid = InProcessGrid(app.legacy_app([secaggplus_mod], uploads), NODES)
    strategy = CuriousLegacyFedAvg(server, fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=NODES,
                                   min_available_clients=NODES)
    # max_weight=1: each node reports one example, so the quantisation step is 16 / 2^22, not 1000 times that
    app.run_secaggplus(grid, strategy, SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2, max_weight=1.0),
                       initial)

    deltas = list(uploads.values())
    assert len(deltas) == NODES and len(observed) == 1  # four uploads, one observation: the aggregate
    nodes, update, aggregate = observed[0]
    assert aggregate and sorted(nodes) == sorted(grid.get_node_ids())
    mean = [sum(d[i] for d in deltas) / NODES for i in range(len(initial))]
    # SecAgg+ quantises to 2^22 levels over [-8, 8]: a few 1e-6 of error, far below the clients' differences
    assert max(float(np.abs(u - m).max()) for u, m in zip(update, mean)) < 1e-4
    for own in deltas:
        assert max(float(np.abs(u - d).max()) for u, d in zip(update, own)) > 1e-3
    (record,) = read_records(tmp_path / "results.jsonl")
    assert record["view"]["aggregate"] and record["view"]["cohort_size"] == NODES
