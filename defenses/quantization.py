"""Quantised uploads: k-bit uniform quantisation per tensor, and half precision.

Zhu, Liu, Han (NeurIPS 2019, Sec. 5) report that sending gradients in half precision does not
stop DLG; coarser quantisation is a common compression that also degrades what an attacker
sees. Neither is a privacy guarantee; both are measured baselines.

k-bit quantisation maps each tensor to ``2^(k-1) - 1`` levels on each side of zero, scaled by
the tensor's largest magnitude ``s = max |g|`` (which is sent along): ``g~ = s / L * round(g L / s)``
with ``L = 2^(k-1) - 1``. Rounding is to nearest by default, or stochastic (unbiased, as in QSGD,
Alistarh et al. 2017) with ``stochastic=true``, drawing from the round's noise generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch

from gradleak.defenses import register
from gradleak.defenses.base import ClientContext, Defense, Update
from gradleak.errors import GradleakError
from gradleak.spec import Range

FP16_MAX = torch.finfo(torch.float16).max


def quantize(tensor: torch.Tensor, bits: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform symmetric k-bit quantisation of one tensor (stochastic rounding when ``generator`` is given)."""
    levels = 2 ** (bits - 1) - 1
    scale = tensor.abs().max()
    if scale == 0:
        return tensor
    y = tensor * (levels / scale)
    if generator is None:
        rounded = torch.round(y)
    else:
        floor = torch.floor(y)
        rounded = floor + (torch.rand(y.shape, generator=generator, dtype=y.dtype, device=y.device) < y - floor)
    return rounded * (scale / levels)


@register
class Quantization(Defense):
    name = "quantize"
    stage = "client"

    @dataclass(frozen=True)
    class Config:
        bits: Annotated[int, Range(2, 24)] = 8  # k; int-8, one of the precisions DLG (Zhu et al. 2019) evaluates
        stochastic: bool = False  # round to nearest (deterministic) unless asked

        def __post_init__(self) -> None:
            if not 2 <= self.bits <= 24:
                raise GradleakError(f"quantize bits must be between 2 and 24, not {self.bits}")

    def on_upload(self, update: Update, context: ClientContext) -> Update:
        generator = context.generator if self.config.stochastic else None
        return tuple(quantize(t, self.config.bits, generator) for t in update)


@register
class HalfPrecision(Defense):
    name = "fp16"
    stage = "client"

    @dataclass(frozen=True)
    class Config:
        pass

    def on_upload(self, update: Update, context: ClientContext) -> Update:
        for index, tensor in enumerate(update):
            if tensor.abs().max() > FP16_MAX:
                raise GradleakError(
                    f"update tensor {index} has entries beyond the float16 range (+-{FP16_MAX:g}); "
                    "it would overflow to infinity in half precision"
                )
        return tuple(t.to(torch.float16).to(t.dtype) for t in update)
