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


def make_app(mods=()) -> ClientApp:
    app = ClientApp(mods=list(mods))

    @app.train()
    def train(message: Message, context: Context) -> Message:
        model = global_model()
        model.load_state_dict(message.content["arrays"].to_torch_state_dict())
        images, labels = partition(InProcessGrid.partition(int(context.node_id)))
        x = dataset().normalization.normalize(images)
        for _ in range(LOCAL_STEPS):
            model.zero_grad()
            F.cross_entropy(model(x), labels).backward()
            with torch.no_grad():  # plain SGD, w <- w - lr g
                for p in model.parameters():
                    p -= LEARNING_RATE * p.grad
        content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                              "metrics": MetricRecord({"num-examples": len(labels)})})
        return Message(content, reply_to=message)

    return app
