"""Model inconsistency (Pasquini, Francati, Ateniese, "Eluding Secure Aggregation in Federated
Learning via Model Inconsistency", CCS 2022).

Secure aggregation never checks that every client trained the same model. The server sends the
target the real model and every other client a copy whose update is zero: the layer before the
classifier gets weight 0 and bias -``dead_bias``, so its ReLU or sigmoid outputs exactly 0 with
derivative exactly 0 (dead units), which zeroes the gradient of every earlier layer and of the
classifier's weight. The secure aggregate is then the target's update, scaled by its share of
the examples, on every parameter but those the dead copy still moves (the classifier's bias);
the server rescales, hides those from the attacker's view, and any gradient attack applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Sequence

import torch
from torch import nn

from gradleak.errors import GradleakError
from gradleak.gradients import Update, batch_gradient, trainable_names
from gradleak.servers.base import Server, ServerContext, private_copy, register, require_clients
from gradleak.spec import Range


@dataclass(frozen=True)
class InconsistentConfig:
    target: Annotated[int, Range(0, 10**6)] = 0  # the client that receives the real model
    dead_bias: Annotated[float, Range(1, 1e6)] = 1e4  # sigmoid(-1e4) and relu(-1e4) are exactly 0 in float32


def silence(model: nn.Module, dead_bias: float) -> nn.Module:
    """A copy of ``model`` whose layer before the classifier is dead (weight 0, bias -dead_bias)."""
    dead = private_copy(model)
    layers = [m for m in dead.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if len(layers) < 2 or layers[-2].bias is None:
        raise GradleakError("the inconsistent server needs a model with a biased layer before its classifier (e.g. mlp, lenet-zhu)")
    with torch.no_grad():
        layers[-2].weight.zero_()
        layers[-2].bias.fill_(-dead_bias)
    return dead


def moving(dead: nn.Module, context: ServerContext) -> list[str]:
    """The parameters the dead copy still updates, found on a random probe batch."""
    device = next(dead.parameters()).device
    probe = torch.Generator().manual_seed(0)
    x = torch.randn(4, *context.input_shape, generator=probe).to(device)
    y = torch.randint(0, context.num_classes, (4,), generator=probe).to(device)
    params = dict(dead.named_parameters())
    grads = batch_gradient(dead, params, x, y)
    return [n for n, g in zip(trainable_names(dead), grads) if bool(g.abs().max() > 0)]


@register
class InconsistentServer(Server):
    """Pasquini et al. (CCS 2022): the real model to ``target``, a zero-update model to the rest."""

    name = "inconsistent"
    Config = InconsistentConfig

    @property
    def target(self) -> int:  # type: ignore[override]
        return self.config.target

    def models(self, global_model: nn.Module, num_clients: int, context: ServerContext) -> list[nn.Module]:
        require_clients(num_clients, self.target)
        dead = silence(global_model, self.config.dead_bias)
        moved = moving(dead, context)
        if len(moved) == len(trainable_names(dead)):
            raise GradleakError("the dead copy still updates every parameter; this model cannot be silenced")
        self.secrets = {"target": self.target, "hidden": tuple(moved)}
        return [global_model if k == self.target else dead for k in range(num_clients)]

    def observe(self, model: nn.Module, update: Update, weights: Sequence[int]) -> tuple[nn.Module, Update]:
        """Undo the mean's dilution (sum n_k / n_target) and hide what the dead copies moved."""
        if weights[self.target] == 0:
            raise GradleakError(f"target {self.target} dropped out of the round; its update is not in the aggregate")
        scale = sum(weights) / weights[self.target]
        hidden = set(self.secrets["hidden"])
        view_model = private_copy(model)
        names = trainable_names(view_model)
        for name, p in view_model.named_parameters():
            if name in hidden:
                p.requires_grad_(False)
        return view_model, tuple(u * scale for n, u in zip(names, update) if n not in hidden)
