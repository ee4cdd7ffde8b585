"""Example-level DP-SGD (Abadi et al., "Deep Learning with Differential Privacy", CCS 2016, Alg. 1).

Each local step:

1. sample a lot: each example of the client's whole local dataset joins it independently with
   probability ``q`` (Poisson sampling, which is what the accountant assumes, and Opacus's rule;
   ``q = 1`` takes all of them). Every step is handed the whole dataset (:attr:`DPSGD.samples_lot`),
   never a fixed slice: with slices, removing one example shifts the others between steps and
   one step's clipped sum moves by up to 2C, twice the sensitivity accounted;
2. per-example gradients ``g_i = d loss(x_i, y_i) / d theta``, computed at once with
   ``torch.func.vmap(grad(...))`` over ``functional_call``;
3. clip each: ``g_i <- g_i * min(1, C / ||g_i||)`` (the norm over all parameters together);
4. noise the sum: ``g~ = (sum_i g_i + N(0, sigma^2 C^2 I)) / (q B)`` with ``B`` the number of
   examples of the local dataset, so that ``q B`` is the expected lot size (Abadi et al. divide
   by the lot size L; dividing by the realised size would itself depend on the data).

Dividing by ``q B`` keeps the result on the scale of :func:`gradleak.gradients.loss_fn`, a batch
mean, so a DP-SGD client runs the same FedSGD/FedAvg arithmetic as any other.

The lot's coins and the noise come from :mod:`~gradleak.defenses.noise` (a CSPRNG unless the
round is seeded).

Per-example gradients need every example to pass through the network on its own. BatchNorm in
training mode normalises with statistics of the whole batch, so one example's gradient depends
on the others and clipping it bounds nothing: such models are refused, and the fix is
GroupNorm (``resnet18:norm=group``), as Opacus also requires. BatchNorm in eval mode (running
statistics) is per-example and allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from gradleak import gradients
from gradleak.defenses import noise, register
from gradleak.defenses.accounting import DPSettings, PlantedBug, bug_noise_scale
from gradleak.defenses.base import Defense, Update
from gradleak.defenses.gaussian import add_noise, clip_factors
from gradleak.defenses.ghost_clipping import clipped_gradient_sum
from gradleak.errors import GradleakError

Params = dict[str, torch.Tensor]


def check_per_example(model: nn.Module) -> None:
    """Refuse models whose per-example gradients are not defined (BatchNorm in training mode)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise GradleakError(
                f"module {name!r} ({type(module).__name__}) mixes the examples of a batch in training "
                "mode, so per-example gradients (and DP-SGD's clipping) are undefined; build the model "
                "with GroupNorm (e.g. resnet18:norm=group, convnet:norm=group) or run it in eval mode"
            )


def per_example_gradients(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor) -> Params:
    """``{name: (B, *shape)}``: each example's gradient of ``loss_fn``, for the trainable parameters."""
    check_per_example(model)
    names = gradients.trainable_names(model)
    trainable = {n: params[n].detach() for n in names}
    fixed = {n: p.detach() for n, p in params.items() if n not in trainable}
    buffers = dict(model.named_buffers())

    def example_loss(theta: Params, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, ({**fixed, **theta}, buffers), (xi.unsqueeze(0),))
        return gradients.loss_fn(logits, yi.unsqueeze(0))

    return vmap(grad(example_loss), in_dims=(None, 0, 0), randomness="different")(trainable, x, y)


def clipped_sum(per_example: Params, clip: float) -> Params:
    """``sum_i g_i min(1, C / ||g_i||)``, with ``||g_i||`` the norm of example i's whole gradient."""
    # Norm of the per-tensor norms: no (B, numel) temporary, which for ResNet-18 would be 1.4 GB.
    norms = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in per_example.values()]), dim=0
    )
    factors = clip_factors(norms, clip)
    return {n: torch.einsum("b,b...->...", factors, g) for n, g in per_example.items()}


@dataclass(frozen=True)
class DPSGDSettings(DPSettings):
    clipping: Literal["fast", "vmap"] = "fast"  # per-example norms from activations where exact (Li et al. 2022), else vmap
    planted_bug: PlantedBug = "none"  # for audits of broken mechanisms only: a tenth of the accounted noise, or no clipping


@register
class DPSGD(Defense):
    """Clipped, noised per-example gradients in every local step; accounted at the example level."""

    name = "dp-sgd"
    stage = "step"
    Config: ClassVar[type] = DPSGDSettings
    samples_lot: ClassVar[bool] = True  # each step is handed the whole local dataset and samples its lot

    def __init__(self, config: DPSGDSettings | None = None) -> None:
        super().__init__(config)
        self.sigma = self.config.sigma  # calibrate once, now, so a bad epsilon fails before training

    def step_gradient(
        self, model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> Update:
        q, clip = self.config.sample_rate, self.config.clip
        bug = self.config.planted_bug
        expected_lot = q * len(x)
        if q < 1:
            chosen = noise.poisson_mask(len(x), q, generator)
            x, y = x[chosen.to(x.device)], y[chosen.to(y.device)]
        names = gradients.trainable_names(model)
        if len(x):
            summed = clipped_gradient_sum(model, params, x, y, math.inf if bug == "no-clip" else clip, self.config.clipping)
        else:  # an empty lot still releases (pure) noise, or its emptiness would show
            check_per_example(model)
            summed = {n: torch.zeros_like(params[n]) for n in names}
        released = add_noise([summed[n] for n in names], self.sigma * clip * bug_noise_scale(bug), generator)
        return tuple(torch._foreach_div(released, expected_lot))

    def epsilon(self) -> float:
        return self.config.achieved_epsilon()
