"""A malicious server as a Flower Strategy: under Flower's SecAgg+ its aggregate is the target's update,
and a client Mod that refuses silenced models takes that away."""

from __future__ import annotations

import pytest

flwr = pytest.importorskip("flwr", reason="Flower is not installed (pip install 'gradleak[flower]')")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flwr.client.mod import secaggplus_mod  # noqa: E402
from flwr.server.workflow import SecAggPlusWorkflow  # noqa: E402

from gradleak.eval.store import read_records  # noqa: E402
from gradleak.flower import CuriousServer, InconsistentLegacyFedAvg, InProcessGrid, dead_layer_mod  # noqa: E402
from gradleak.flower.mods import REFUSED_CODE, dead_layers  # noqa: E402
from gradleak.threat import LocalTraining, Truth  # noqa: E402

import flower_app as app  # noqa: E402

NODES, TARGET, SEED = 4, 2, 0
LOCAL = LocalTraining("fedavg", app.LOCAL_STEPS, app.LEARNING_RATE)
ATTACK = "idlg:iterations=200,restarts=1"


def _truth(node_ids: tuple[int, ...]) -> Truth:
    parts = [app.partition(InProcessGrid.partition(n)) for n in node_ids]
    return Truth(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))


class Watching(CuriousServer):
    """Keeps every view it attacks, to compare with what the nodes really uploaded."""

    def attack_view(self, server_round, node_ids, view):
        self.views = [*getattr(self, "views", []), (node_ids, view)]
        return super().attack_view(server_round, node_ids, view)


def _round(tmp_path, mods=(), server=f"inconsistent:target={TARGET}", attack=ATTACK):
    data = app.dataset()
    curious = Watching(app.global_model(), data.normalization, data.shape, data.num_classes, LOCAL,
                       attack=attack, out=tmp_path, seed=SEED, truth=_truth)
    # max_weight=1: each node reports one example, so the quantisation step is 16 / 2^22
    workflow = SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2, max_weight=1.0)
    strategy = InconsistentLegacyFedAvg(curious, server, secaggplus=workflow, fraction_fit=1.0, fraction_evaluate=0.0,
                                        min_fit_clients=NODES, min_available_clients=NODES)
    deltas: dict[int, list[np.ndarray]] = {}
    grid = InProcessGrid(app.legacy_app([*mods, secaggplus_mod], deltas), NODES)  # the check runs first
    replies = []
    deliver = grid.send_and_receive
    grid.send_and_receive = lambda messages, timeout=None: replies.extend(out := deliver(messages)) or out
    app.run_secaggplus(grid, strategy, workflow, [t.numpy() for t in app.global_model().state_dict().values()])
    return curious, strategy, deltas, replies


def test_under_secaggplus_the_aggregate_is_the_targets_update(tmp_path):
    curious, strategy, deltas, _ = _round(tmp_path)
    target = InProcessGrid.node_id(TARGET)
    assert strategy.targets[1] == target and len(deltas) == NODES
    ((nodes, view),) = curious.views
    assert nodes == (target,) and view.aggregate and view.cohort_size == NODES
    shown = [n for n, p in view.model.named_parameters() if p.requires_grad]
    assert shown and len(shown) < len(list(view.model.parameters()))  # the classifier's bias is hidden
    own = dict(zip(view.model.state_dict(), deltas[target]))
    # SecAgg+ quantises each of the 4 uploads to 16 / 2^22; rescaled by 4 that is a few 1e-5 at most
    error = max(float((u - torch.from_numpy(own[n])).abs().max()) for n, u in zip(shown, view.update))
    assert error < 1e-4
    # far below what tells the nodes' updates apart: the view is the target's and no one else's
    for nid, delta in deltas.items():
        if nid != target:
            other = dict(zip(view.model.state_dict(), delta))
            assert max(float((u - torch.from_numpy(other[n])).abs().max()) for n, u in zip(shown, view.update)) > 1e-3
    (record,) = read_records(tmp_path / "results.jsonl")
    assert record["flower"]["node_ids"] == [target] and record["label"]["server"] == "inconsistent"
    assert record["metrics"]["psnr"] > 30, record["metrics"]  # iDLG recovers the target's face


def test_the_dead_layer_mod_refuses_the_silenced_model(tmp_path):
    curious, strategy, deltas, replies = _round(tmp_path, mods=[dead_layer_mod(app.global_model, app.batch)],
                                                attack="idlg:iterations=2,restarts=1")
    target = InProcessGrid.node_id(TARGET)
    refused = {int(r.metadata.src_node_id) for r in replies if r.has_error() and r.error.code == REFUSED_CODE}
    assert refused == set(InProcessGrid.node_id(k) for k in range(NODES)) - {target}
    assert list(deltas) == [target]  # only the target trained
    assert not hasattr(curious, "views") and not (tmp_path / "results.jsonl").exists()  # SecAgg+ gave up the round


def test_an_honest_model_passes_the_check():
    x, y = app.batch(type("Ctx", (), {"node_id": InProcessGrid.node_id(0)})())
    assert dead_layers(app.global_model(), x, y) == []


def test_after_a_refusal_the_node_refuses_the_rest_of_that_round():
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

    from gradleak.servers import ServerContext, build_server

    data = app.dataset()
    prepared = ServerContext(data.shape, data.num_classes)
    (_, silenced) = build_server("inconsistent:target=0").models(app.global_model(), 2, prepared)
    InProcessGrid(app.make_app(), 2)  # sets the run identity Flower's messages need
    mod = dead_layer_mod(app.global_model, app.batch)
    context = Context(run_id=0, node_id=InProcessGrid.node_id(1), node_config={}, state=RecordDict(), run_config={})
    trained = []

    def call_next(message, context):
        trained.append(message.metadata.group_id)
        return Message(RecordDict(), reply_to=message)

    def message(group: str, model=None) -> Message:
        content = RecordDict({"config": ConfigRecord({"stage": "unmask"})})
        if model is not None:
            content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "config": ConfigRecord()})
        return Message(content, InProcessGrid.node_id(1), MessageType.TRAIN, group_id=group)

    assert mod(message("1", silenced), context, call_next).error.code == REFUSED_CODE
    assert mod(message("1"), context, call_next).error.code == REFUSED_CODE  # e.g. SecAgg+'s unmask stage
    assert not mod(message("2", app.global_model()), context, call_next).has_error()
    assert trained == ["2"]
