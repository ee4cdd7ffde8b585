"""A Flower user's ClientApp, written as a Flower user would (plain torch, message API): each node
trains a copy of the received model on its partition of gradleak's embedded ``faces`` data."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from gradleak.data import load_dataset
from gradleak.flower import InProcessGrid
from gradleak.models import build

DATASET, MODEL = "faces", "lenet-zhu"
EXAMPLES_PER_NODE = 1
LOCAL_STEPS, LEARNING_RATE = 1, 0.01  # one step: the delta is -lr times the gradient


def dataset():
    return load_dataset(DATASET)


def global_model(seed: int = 0) -> torch.nn.Module:
    data = dataset()
    return build(MODEL, data.shape, data.num_classes, seed=seed)


def partition(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Node k's images in [0, 1] and labels: the examples gradleak's scenario gives client k."""
    return dataset().get(list(range(k * EXAMPLES_PER_NODE, (k + 1) * EXAMPLES_PER_NODE)))


def batch(context: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """The node's normalised inputs and labels."""
    images, labels = partition(InProcessGrid.partition(int(context.node_id)))
    return dataset().normalization.normalize(images), labels


def train(model: torch.nn.Module, context: Context) -> int:
    """Plain SGD on the node's partition, in place; returns the number of examples."""
    x, labels = batch(context)
    for _ in range(LOCAL_STEPS):
        model.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        with torch.no_grad():  # plain SGD, w <- w - lr g
            for p in model.parameters():
                p -= LEARNING_RATE * p.grad
    return len(labels)


def make_app(mods=()) -> ClientApp:
    app = ClientApp(mods=list(mods))

    @app.train()
    def train_message(message: Message, context: Context) -> Message:
        model = global_model()
        model.load_state_dict(message.content["arrays"].to_torch_state_dict())
        n = train(model, context)
        content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord({"num-examples": n})})
        return Message(content, reply_to=message)

    return app


def legacy_app(mods=(), deltas: dict | None = None) -> ClientApp:
    """The same training as a legacy ``NumPyClient`` (SecAgg+ runs on the legacy API); each node's
    update (returned minus received arrays) goes into ``deltas[node_id]``."""
    from flwr.client import NumPyClient

    class LegacyClient(NumPyClient):
        def __init__(self, context: Context) -> None:
            self.context = context

        def fit(self, parameters, config):
            model = global_model()
            model.load_state_dict({k: torch.from_numpy(p.copy()) for k, p in zip(model.state_dict(), parameters)})
            n = train(model, self.context)
            weights = [t.detach().numpy() for t in model.state_dict().values()]
            if deltas is not None:
                deltas[int(self.context.node_id)] = [w - p for w, p in zip(weights, parameters)]
            return weights, n, {}

    return ClientApp(client_fn=lambda context: LegacyClient(context).to_client(), mods=list(mods))


def run_secaggplus(grid: InProcessGrid, strategy, workflow, initial: list) -> None:
    """One round of Flower's SecAgg+ workflow over ``grid``, driving ``strategy`` from ``initial`` arrays."""
    from flwr.app import ConfigRecord
    from flwr.common import ndarrays_to_parameters
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server import ServerConfig
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey

    manager = SimpleClientManager()
    for nid in grid.get_node_ids():
        manager.register(GridClientProxy(node_id=nid, grid=grid, run_id=0))
    context = LegacyContext(Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={}),
                            config=ServerConfig(num_rounds=1), strategy=strategy, client_manager=manager)
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: 1})
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(ndarrays_to_parameters(initial), True)
    workflow(grid, context)
