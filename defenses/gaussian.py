"""The two operations every Gaussian DP mechanism is made of: clip to an L2 norm, add Gaussian noise.

Clipping scales a contribution ``g`` by ``min(1, C / ((1 + m) ||g||))``, so its norm is at most
``C`` and the sum of contributions changes by at most ``C`` when one is added or removed: the
sensitivity the accountant assumes. The relative margin ``m`` covers float32 rounding in the
norm and the scaling (an absolute one, like Opacus's ``+ 1e-6``, vanishes next to a norm of 400
and lets the clipped norm land a rounding error above ``C``).
"""

from __future__ import annotations

import torch

from gradleak.defenses.base import Update

CLIP_MARGIN = 1e-5


def global_norm(update: Update) -> torch.Tensor:
    """The L2 norm of an update taken as one flat vector over all its tensors."""
    return torch.sqrt(sum(t.detach().double().square().sum() for t in update)).to(update[0].dtype)


def clip_factors(norms: torch.Tensor, clip: float) -> torch.Tensor:
    """``min(1, C / ((1 + m) norm))`` for each norm: the scale that brings a contribution inside the C-ball."""
    return (clip / (norms * (1 + CLIP_MARGIN))).nan_to_num(posinf=1.0).clamp(max=1.0)


def clip_update(update: Update, clip: float) -> Update:
    """Scale a whole update (one client's contribution) to L2 norm at most ``clip``."""
    factor = clip_factors(global_norm(update), clip)
    return tuple(t * factor for t in update)


def gaussian_noise(like: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """N(0, std^2) noise shaped like ``like``, drawn from ``generator`` (which lives on ``like``'s device)."""
    return std * torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


def add_noise(update: Update, std: float, generator: torch.Generator) -> Update:
    return tuple(t + gaussian_noise(t, std, generator) for t in update)
