"""How far a dummy update is from the observed one: the distances gradient matching minimises.

Both take the updates as sequences of tensors (one per trainable parameter) and optional
per-tensor weights, and return a scalar that is zero exactly when the updates agree (the
cosine distance: when they point the same way).

- ``l2``: Zhu et al., "Deep Leakage from Gradients", NeurIPS 2019, eq. 4:
  ``sum_l w_l ||grad_l(x') - grad_l(x)||^2``.
- ``cosine``: Geiping et al., "Inverting Gradients", NeurIPS 2020, eq. 4 (without the prior):
  ``1 - <a, b> / (||a|| ||b||)`` over all layers together, insensitive to the update's scale.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from gradleak.registry import Registry

Update = Sequence[torch.Tensor]
Objective = Callable[[Update, Update, Sequence[float] | None], torch.Tensor]

OBJECTIVES: Registry[Objective] = Registry("objective")


def _weights(weights: Sequence[float] | None, count: int) -> Sequence[float]:
    return weights if weights is not None else (1.0,) * count


@OBJECTIVES.register("l2")
def squared_l2(dummy: Update, target: Update, weights: Sequence[float] | None = None) -> torch.Tensor:
    """DLG: the weighted sum of squared differences over every parameter."""
    return sum(w * (a - b).square().sum() for a, b, w in zip(dummy, target, _weights(weights, len(target))))


@OBJECTIVES.register("cosine")
def cosine_distance(dummy: Update, target: Update, weights: Sequence[float] | None = None) -> torch.Tensor:
    """Inverting Gradients: one minus the cosine similarity of the two updates, all layers at once."""
    dot = dummy_norm = target_norm = 0.0
    for a, b, w in zip(dummy, target, _weights(weights, len(target))):
        dot = dot + w * (a * b).sum()
        dummy_norm = dummy_norm + w * a.square().sum()
        target_norm = target_norm + w * b.square().sum()
    return 1 - dot / (dummy_norm.sqrt() * target_norm.sqrt()).clamp_min(1e-30)


def relative_errors(dummy: Update, target: Update) -> torch.Tensor:
    """``||a_l - b_l||^2 / ||b_l||^2`` for each tensor: how well every layer, not just the largest, matches.

    The summed L2 distance is dominated by the layers with the largest gradients; a dummy can
    match those and sit at a tiny total loss while a small layer (often the first convolution,
    the one that sees the pixels) is still far off. The worst of these ratios is the stricter
    criterion the engine scores restarts by.
    """
    return torch.stack(
        [(a - b).square().sum() / b.square().sum().clamp_min(1e-30) for a, b in zip(dummy, target)]
    )
