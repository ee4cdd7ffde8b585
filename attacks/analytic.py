"""The analytic linear-layer leak (Phong et al., "Privacy-Preserving Deep Learning via Additively
Homomorphic Encryption", 2017; Fidel / Enthoven et al., 2021).

For a linear layer y = W x + b, row i's gradients are dL/dW_i = sum_n delta_{n,i} x_n and
dL/db_i = sum_n delta_{n,i}. When a single example n activates row i (a ReLU gates the rest), the
ratio dL/dW_i / dL/db_i is x_n exactly; for one example every row gives it. Rows that one example
alone activates all return the same image, while rows mixing several examples weight them
differently, so the attack keeps the images on which several rows agree first.

Under an imprint server (Fowl et al., ICLR 2022) the rows are cumulative bins of one statistic,
row i firing for h(x) > q_i with q ascending: consecutive differences isolate the examples whose
h falls in one bin, and the bins' ratios are read instead (``view.secrets["bins"]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn

from gradleak.attacks import register
from gradleak.attacks.base import Attack
from gradleak.errors import GradleakError
from gradleak.gradients import trainable_names
from gradleak.spec import Range
from gradleak.threat import Reconstruction, ServerView


@dataclass(frozen=True)
class AnalyticConfig:
    layer: str | None = None  # the linear layer read (module name); None: the server's planted one, else the first
    min_signal: Annotated[float, Range(0, 1)] = 1e-6  # rows with |dL/db_i| below this fraction of the largest are empty
    agreement: Annotated[float, Range(0, 1, low_open=True)] = 1e-3  # two rows show one image when their relative distance is below this


def first_linear(model: nn.Module, name: str | None) -> str:
    """The module name of the layer to read: ``name`` if given, else the model's first nn.Linear."""
    modules = dict(model.named_modules())
    if name is not None:
        if not isinstance(modules.get(name), nn.Linear):
            raise GradleakError(f"layer {name!r} is not a linear layer of the model; name an nn.Linear module")
        return name
    for found, module in modules.items():
        if isinstance(module, nn.Linear):
            return found
    raise GradleakError("the analytic attack needs a model with a linear layer on the input (e.g. mlp)")


def row_ratios(dW: torch.Tensor, db: torch.Tensor, min_signal: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x = dL/dW_i / dL/db_i for every row carrying signal, and those rows' |dL/db_i|."""
    strength = db.abs()
    keep = strength > min_signal * float(strength.max()) if strength.numel() and float(strength.max()) > 0 else strength > 0
    return dW[keep] / db[keep, None], strength[keep]


def agreeing(candidates: torch.Tensor, strength: torch.Tensor, plausible: torch.Tensor, tolerance: float) -> list[tuple[int, int]]:
    """Greedy groups of rows that give the same image: (representative row, rows agreeing).

    Groups confirmed by several rows come first, then single rows whose image is ``plausible``
    (a real input lies in the pixel box), each by signal strength.
    """
    order = torch.argsort(strength, descending=True).tolist()
    groups: list[list[int]] = []
    heads = candidates.new_empty(candidates.shape)  # the groups' first rows, in group order
    reach = candidates.new_empty(len(candidates))  # tolerance * |head|
    for row in order:
        x = candidates[row]
        close = ((heads[: len(groups)] - x).norm(dim=1) <= reach[: len(groups)]).nonzero()
        if len(close):
            groups[int(close[0])].append(row)
        else:
            heads[len(groups)] = x
            reach[len(groups)] = tolerance * x.norm().clamp_min(1e-12)
            groups.append([row])
    groups.sort(key=lambda g: (len(g) > 1, bool(plausible[g[0]])), reverse=True)  # stable: strongest first within a rank
    return [(g[0], len(g)) for g in groups]


def in_box(candidates: torch.Tensor, view: ServerView) -> torch.Tensor:
    """Whether each candidate (normalised, flattened) is a valid image: every pixel in [0, 1]."""
    low, high = view.normalization.bounds(candidates.new_zeros(1, view.input_shape[0], 1, 1))
    shaped = candidates.reshape(len(candidates), *view.input_shape)
    slack = 1e-6 * (high - low)  # float rounding of an exact ratio
    return ((shaped >= low - slack) & (shaped <= high + slack)).flatten(1).all(dim=1)


@register
class Analytic(Attack):
    """Phong et al. 2017: read each input off a linear layer's gradient, x = dW_i / db_i."""

    name = "analytic"
    Config = AnalyticConfig

    def reconstruct(self, view: ServerView) -> Reconstruction:
        layer = first_linear(view.model, self.config.layer or view.secrets.get("layer"))
        names = trainable_names(view.model)
        weight, bias = f"{layer}.weight", f"{layer}.bias"
        if weight not in names or bias not in names:
            raise GradleakError(f"layer {layer!r} needs a trainable weight and bias in the update")
        dW = view.update[names.index(weight)].detach().to(torch.float64)
        db = view.update[names.index(bias)].detach().to(torch.float64)
        if dW.shape[1] != math.prod(view.input_shape):
            raise GradleakError(f"layer {layer!r} reads {dW.shape[1]} features, not the {math.prod(view.input_shape)} pixels of an input")
        if view.secrets.get("bins"):  # cumulative bins: row i minus row i+1 holds one bin
            dW = dW - torch.cat([dW[1:], torch.zeros_like(dW[:1])])
            db = db - torch.cat([db[1:], torch.zeros_like(db[:1])])
        candidates, strength = row_ratios(dW, db, self.config.min_signal)
        if not len(candidates):
            raise GradleakError(f"no row of layer {layer!r} carries a gradient; nothing to read")
        groups = agreeing(candidates, strength, in_box(candidates, view), self.config.agreement)[: view.num_examples]
        chosen = candidates[[row for row, _ in groups]].to(torch.float32)
        images = view.normalization.denormalize(chosen.reshape(len(chosen), *view.input_shape))
        return Reconstruction(
            images=images.cpu(),
            labels=None,
            info={"rows_read": len(candidates), "images": len(groups), "confirmed": sum(1 for _, n in groups if n > 1)},
        )
