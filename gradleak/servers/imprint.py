"""Imprint (Fowl, Geiping, Czaja, Goldblum, Goldstein, "Robbing the Fed: Directly Obtaining
Private Data in Federated Learning with Modified Models", ICLR 2022).

The server puts a block in front of the model: k linear+ReLU rows that all measure one statistic
h(x) = <a, x> (brightness, or a random direction), row i firing for h(x) > q_i with the biases
q_0 < ... < q_{k-1} at quantiles of h over public data (Sec. 3, cumulative bins), then a linear
layer back to the input shape whose columns are all equal, added to the input so the rest of the
model runs nearly unchanged. Every row then sees the same delta_n per example, so rows i and i+1
differ by exactly the examples with q_i < h <= q_{i+1}: an example alone in its bin is
(dW_i - dW_{i+1}) / (db_i - db_{i+1}), whatever the aggregation (Eq. 2). With equal-mass bins an
example is alone with probability (1 - 1/k)^(n-1). The one-shot variant (Sec. 4) gives each bin
the mass 1/N of one image in an aggregate of N, around the median, so each bin holds exactly one
image with probability about 1/e. Secrets: ``layer`` (the rows) and ``bins`` (the q_i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import nn

from gradleak.errors import GradleakError
from gradleak.gradients import loss_fn
from gradleak.servers.base import Server, ServerContext, private_copy, register
from gradleak.spec import Range, Seed

# The block's rows read h scaled down this much, so its contribution to the model's input is tiny
# while its gradient (set by the back layer) stays large.
ROW_SCALE = 1e-6


@dataclass(frozen=True)
class ImprintConfig:
    bins: Annotated[int, Range(1, 65_536)] = 128  # k rows, one cumulative bin each
    statistic: Literal["brightness", "random"] = "brightness"  # h = mean pixel, or a random direction
    seed: Seed = 0  # the random direction
    one_shot: bool = False  # bins of mass 1/aggregate around the median (paper Sec. 4)
    aggregate: Annotated[int, Range(2, 10**7)] = 1024  # one-shot: images the server expects in the aggregate
    reach: Annotated[float, Range(0, None, low_open=True)] = 1.0  # the block's typical largest gradient entry (secagg clips at 8)


class ImprintBlock(nn.Module):
    """x + V relu(s (W x - q)) with W's rows all ``a`` and V's columns all equal."""

    def __init__(self, input_shape: tuple[int, ...], a: torch.Tensor, q: torch.Tensor, gain: float) -> None:
        super().__init__()
        features, bins = math.prod(input_shape), len(q)
        self.rows = nn.Linear(features, bins)
        self.back = nn.Linear(bins, features)
        with torch.no_grad():
            self.rows.weight.copy_(ROW_SCALE * a.expand(bins, features))
            self.rows.bias.copy_(-ROW_SCALE * q)
            self.back.weight.fill_(gain)  # delta_{n,i} = gain * sum_j dL/dx_{n,j} for every row i
            self.back.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.back(torch.relu(self.rows(x.flatten(1)))).view_as(x)


class Imprinted(nn.Module):
    """The model a client receives: the imprint block, then the server's model unchanged."""

    def __init__(self, block: ImprintBlock, model: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.block(x))


def direction(config: ImprintConfig, features: int) -> torch.Tensor:
    """The statistic's a: the mean of the pixels, or a unit random direction scaled like it."""
    if config.statistic == "brightness":
        return torch.full((features,), 1.0 / features)
    a = torch.randn(features, generator=torch.Generator().manual_seed(config.seed), dtype=torch.float64)
    return (a / (a.norm() * math.sqrt(features))).float()


def bin_levels(config: ImprintConfig, h: torch.Tensor) -> torch.Tensor:
    """q_0 < ... < q_{k-1}: quantiles i/k of h (below the smallest public value for i = 0), or
    one-shot, k consecutive quantiles 1/N apart centred on the median."""
    k = config.bins
    if config.one_shot:
        if k >= config.aggregate:
            raise GradleakError(f"one-shot needs fewer bins than images in the aggregate ({k} >= {config.aggregate}); lower bins")
        levels = 0.5 + (torch.arange(k, dtype=torch.float64) - (k - 1) / 2) / config.aggregate
    else:
        levels = torch.arange(k, dtype=torch.float64) / k
    q = torch.quantile(h.to(torch.float64), levels)
    if not config.one_shot:
        q[0] = h.min() - (h.max() - h.min() + 1e-6)  # the lowest row fires for every example
    if bool((q[1:] <= q[:-1]).any()):
        raise GradleakError(f"the public data give fewer than {k} distinct quantiles of h; lower bins or add public data")
    return q.float()


def block_gain(model: nn.Module, public: torch.Tensor, num_classes: int, reach: float) -> float:
    """The back layer's weight v making the rows' largest gradient entry, |delta_n| max|x_n| with
    delta_n = v sum_j dL/dx_{n,j}, about ``reach`` on public data with random labels (secure
    aggregation clips it; its rounding step is the floor it must stand above)."""
    probe = private_copy(model)  # a train-mode forward would move the sent model's BatchNorm statistics
    x = public[:256].detach().clone().requires_grad_(True)
    y = torch.randint(0, num_classes, (len(x),), generator=torch.Generator().manual_seed(0)).to(x.device)
    (g,) = torch.autograd.grad(loss_fn(probe(x), y) * len(x), [x])  # per-example input gradients
    sizes = g.flatten(1).sum(1).abs() * x.detach().flatten(1).abs().amax(1)
    typical = float(torch.quantile(sizes.double(), 0.9))
    if not typical > 0:
        raise GradleakError("the model's input gradient vanishes on public data; the imprint block would read nothing")
    return reach / typical


@register
class ImprintServer(Server):
    """Fowl et al. (ICLR 2022): an imprint block of cumulative bins in front of the model."""

    name = "imprint"
    Config = ImprintConfig
    needs_public = True

    def models(self, global_model: nn.Module, num_clients: int, context: ServerContext) -> list[nn.Module]:
        if context.public is None or len(context.public) < 2:
            raise GradleakError("the imprint server estimates its bins on public data; use a dataset (not --image) with examples no client holds")
        public = context.public
        features = math.prod(context.input_shape)
        a = direction(self.config, features).to(public.device)
        h = public.flatten(1) @ a
        q = bin_levels(self.config, h.cpu()).to(public.device)
        model = private_copy(global_model)
        gain = block_gain(model, public, context.num_classes, self.config.reach)
        block = ImprintBlock(context.input_shape, a, q, gain).to(public.device)
        imprinted = Imprinted(block, model)
        imprinted.train(global_model.training)
        self.secrets = {"layer": "block.rows", "bins": tuple(float(v) for v in q)}
        return [imprinted] * num_clients

    def describe(self) -> str:
        c = self.config
        shot = f",one_shot=true,aggregate={c.aggregate}" if c.one_shot else ""
        return f"imprint:bins={c.bins},statistic={c.statistic}{shot}"
