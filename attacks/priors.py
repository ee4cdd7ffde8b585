"""Image priors added to the matching objective: what natural images look like.

- :func:`total_variation`: Geiping et al., "Inverting Gradients", NeurIPS 2020, eq. 4 (the
  anisotropic TV of the dummy: mean absolute difference of neighbouring pixels).
- :class:`BatchNormStatistics`: Yin et al., "See through Gradients: Image Batch Recovery via
  GradInversion", CVPR 2021, eq. 6: every BatchNorm layer's running mean and variance (part
  of the model the server sent) describe the data the model was trained on, so the batch
  mean and variance of each BN layer's input on the dummy should match them:
  ``sum_l ||mu_l(x') - mu_l||_2 + ||sigma^2_l(x') - sigma^2_l||_2``.
- :func:`group_consistency`: Yin et al., eq. 8: several reconstructions from different
  starts should agree; each is pulled towards their pixel-wise mean ``||x'_g - E(x')||_2``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation of a batch (B, C, H, W): mean |horizontal| + mean |vertical| difference."""
    horizontal = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    vertical = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return horizontal + vertical


class BatchNormStatistics:
    """Records the input of every BatchNorm layer of ``model`` while active, then scores it.

    The running statistics are copied when the prior is built, before any forward pass in
    training mode moves them.
    """

    def __init__(self, model: nn.Module) -> None:
        self._layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self._targets = [(m.running_mean.detach().clone(), m.running_var.detach().clone()) for m in self._layers]
        self._inputs: list[torch.Tensor | None] = [None] * len(self._layers)
        self._recording = False
        for index, layer in enumerate(self._layers):
            layer.register_forward_hook(self._hook(index))

    def __bool__(self) -> bool:
        return bool(self._layers)

    def _hook(self, index: int):
        def record(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            if self._recording and self._inputs[index] is None:
                self._inputs[index] = args[0]

        return record

    def start(self) -> None:
        """Record the first forward pass from now on (the one at the global weights)."""
        self._inputs = [None] * len(self._layers)
        self._recording = True

    def penalty(self) -> torch.Tensor:
        """Distance of the recorded batch statistics from the running ones, summed over layers."""
        self._recording = False
        total = 0.0
        for recorded, (mean, var) in zip(self._inputs, self._targets):
            if recorded is None:
                continue
            dims = [0, *range(2, recorded.ndim)]
            total = total + (recorded.mean(dims) - mean).norm() + (recorded.var(dims, unbiased=False) - var).norm()
        return torch.as_tensor(total)


def group_consistency(candidates: torch.Tensor) -> torch.Tensor:
    """Mean distance of each candidate (G, B, C, H, W) from the group's pixel-wise mean (held fixed)."""
    consensus = candidates.detach().mean(0, keepdim=True)
    return (candidates - consensus).flatten(2).norm(dim=2).mean()
