"""The two operations every Gaussian DP mechanism is made of: clip to an L2 norm, add Gaussian noise.

Clipping scales a contribution ``g`` by ``min(1, C / ((1 + m) ||g||))``, so its norm is at most
``C`` and the sum of contributions changes by at most ``C`` when one is added or removed: the
sensitivity the accountant assumes. The relative margin ``m`` covers float32 rounding in the
norm and the scaling (an absolute one, like Opacus's ``+ 1e-6``, vanishes next to a norm of 400
and lets the clipped norm land a rounding error above ``C``).
"""

from __future__ import annotations

import torch

from gradleak.defenses import noise
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


def add_noise(update: Update, std: float, generator: torch.Generator) -> Update:
    """``update`` plus N(0, std^2) on every entry, from ``generator`` (:func:`~gradleak.defenses.noise.gaussian`:
    the CSPRNG unless the generator is seeded, snapped to a power-of-two grid).

    One draw for all tensors: on a GPU a DP step is bound by kernel launches.
    """
    tensors = list(update)
    sizes = [t.numel() for t in tensors]
    noised = noise.gaussian(torch.cat([t.reshape(-1) for t in tensors]), std, generator)
    return tuple(z.view_as(t) for z, t in zip(noised.split(sizes), tensors))
