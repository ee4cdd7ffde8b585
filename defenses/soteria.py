"""Soteria: perturb the data representation seen by the first fully connected layer.

Sun, Li, Wang, Song, Chen, Li, "Soteria: Provable Defense against Privacy Leakage in Federated
Learning from Representation Perspective", CVPR 2021. The weight gradient of a linear layer is
``dL/dW = delta r^T``, so it carries the representation ``r`` (its input) almost verbatim, and
an inversion that recovers ``r`` goes on to recover ``x``. Soteria removes the features of ``r``
through which the input is easiest to reconstruct: those where a small change of ``r_f`` means a
large change of ``x``, i.e. the smallest ``||r_f|| / ||d r_f / d x||`` (their Sec. 4, the
approximation of ``||r (dr/dx)^-1||``). Zeroing feature ``f`` of ``r`` zeroes column ``f`` of
``dL/dW``; the fraction ``ratio`` of features with the smallest score are removed.

For a batch, the score of feature f uses the whole batch: ``||r_{:,f}||`` and the norm of the
gradient of ``sum_b r_{b,f}`` with respect to the batch. Only that one layer's gradient changes;
the others still carry what they carry (Soteria's guarantee is for that layer alone), and the
defense acts in the ``step`` stage because it needs the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn
from torch.func import functional_call, jacrev

from gradleak import gradients
from gradleak.defenses import register
from gradleak.defenses.base import Defense, Update
from gradleak.errors import GradleakError
from gradleak.spec import Range

Params = dict[str, torch.Tensor]


def first_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The first ``nn.Linear`` in module order and its name; an error naming the fix if there is none."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            return name, module
    raise GradleakError(
        f"soteria perturbs the input of the first fully connected layer, and {type(model).__name__} has no nn.Linear"
    )


def feature_scores(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """``||r_{:,f}|| / ||d sum_b r_{b,f} / d x||`` for each feature f of the first linear layer's input."""
    _, layer = first_linear(model)
    captured: list[torch.Tensor] = []

    def representation(inputs: torch.Tensor) -> torch.Tensor:
        hook = layer.register_forward_hook(lambda module, args, output: captured.append(args[0]))
        try:
            functional_call(model, params, (inputs,))
        finally:
            hook.remove()
        return captured.pop().flatten(1)

    r = representation(x).detach()
    jacobian = jacrev(lambda inputs: representation(inputs).sum(0))(x)  # (F, *x.shape)
    return torch.linalg.vector_norm(r, dim=0) / torch.linalg.vector_norm(jacobian.flatten(1), dim=1).clamp_min(1e-12)


@register
class Soteria(Defense):
    name = "soteria"
    stage = "step"

    @dataclass(frozen=True)
    class Config:
        ratio: Annotated[float, Range(0, 1, high_open=True)] = 0.8  # fraction of features removed; our choice (Sun et al. sweep this rate)

        def __post_init__(self) -> None:
            if not 0 <= self.ratio < 1:
                raise GradleakError(f"soteria ratio must be in [0, 1) (the fraction of features removed), not {self.ratio}")

    def step_gradient(
        self, model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> Update:
        grads = list(gradients.batch_gradient(model, params, x, y))
        layer_name, _ = first_linear(model)
        index = gradients.trainable_names(model).index(f"{layer_name}.weight" if layer_name else "weight")
        scores = feature_scores(model, {n: p.detach() for n, p in params.items()}, x)
        removed = torch.argsort(scores)[: int(self.config.ratio * len(scores))]
        weight_grad = grads[index].clone()
        weight_grad[:, removed] = 0
        grads[index] = weight_grad
        return tuple(grads)
