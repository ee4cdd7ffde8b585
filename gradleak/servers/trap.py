"""Trap weights (Boenisch, Dziedzic, Schuster, Shamsabadi, Shumailov, Papernot, "When the Curious
Abandon Honesty: Federated Learning Is Not Private", EuroS&P 2023).

The server rewrites only the weights of the model's first layer, a linear layer on the pixels
followed by a ReLU: in each row a random half of the entries is -|N(0, sigma)| and the other half
+|N(0, sigma)| times a factor s < 1 (Sec. IV-B, s = 0.95), so on non-negative pixels a row's
pre-activation is usually negative and the row fires for few examples. A row that exactly one
example fires gives that example as dW_i / db_i; the analytic attack reads those rows. The rows
act on non-negative inputs as in the paper: the bias shifts each channel by its smallest public
value m (a black pixel after normalisation), b_i = -<w_i, m>, so row i reads <w_i, x - m>.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn

from gradleak.errors import GradleakError
from gradleak.servers.base import Server, ServerContext, private_copy, register
from gradleak.spec import Range, Seed


@dataclass(frozen=True)
class TrapConfig:
    scale: Annotated[float, Range(0, 1, low_open=True)] = 0.95  # s, the positive half's factor (paper 0.95; 0.85 on digits)
    sigma: Annotated[float, Range(0, None, low_open=True)] = 0.5  # std of the |N(0, sigma)| entries; the ratio dW/db ignores it
    seed: Seed = 0  # which entries are negative, and their sizes


def first_layer(model: nn.Module) -> tuple[str, nn.Linear]:
    """The model's first layer with parameters, which must be linear, biased and followed by a ReLU."""
    order = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    for k, (name, module) in enumerate(order):
        if isinstance(module, nn.Linear) and module.bias is not None:
            after = order[k + 1][1] if k + 1 < len(order) else None
            if not isinstance(after, nn.ReLU):
                raise GradleakError(f"trap weights need a ReLU after the first layer {name!r}; use e.g. mlp:activation=relu")
            return name, module
        if any(True for _ in module.parameters(recurse=False)):
            break
    raise GradleakError("trap weights rewrite a first layer that is linear on the pixels (with a bias); this model has none, use e.g. mlp:activation=relu")


def trap_weights(rows: int, features: int, config: TrapConfig) -> torch.Tensor:
    """Each row: a random half -|N(0, sigma)|, the other half s |N(0, sigma)|."""
    generator = torch.Generator().manual_seed(config.seed)
    size = torch.randn(rows, features, generator=generator).abs() * config.sigma
    negative = torch.rand(rows, features, generator=generator).argsort(dim=1) < features // 2
    return torch.where(negative, -size, config.scale * size)


def black(context: ServerContext) -> torch.Tensor:
    """The flattened per-channel smallest public input (zero without public data: inputs taken as they come)."""
    c, h, w = context.input_shape
    if context.public is None:
        return torch.zeros(c * h * w)
    low = context.public.transpose(0, 1).flatten(1).amin(dim=1).cpu()
    return low[:, None].expand(c, h * w).reshape(-1)


@register
class TrapServer(Server):
    """Boenisch et al. (EuroS&P 2023): trap weights in the first layer, no new block."""

    name = "trap"
    Config = TrapConfig
    needs_public = True

    def models(self, global_model: nn.Module, num_clients: int, context: ServerContext) -> list[nn.Module]:
        model = private_copy(global_model)
        name, layer = first_layer(model)
        if layer.in_features != context.input_shape[0] * context.input_shape[1] * context.input_shape[2]:
            raise GradleakError(f"the first layer {name!r} reads {layer.in_features} features, not the input's pixels; trap weights need a linear input layer")
        weight = trap_weights(layer.out_features, layer.in_features, self.config).to(layer.weight)
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(-(weight @ black(context).to(weight)))
        self.secrets = {"layer": name}
        return [model] * num_clients
