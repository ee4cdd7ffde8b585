"""Defense-aware matching: what the attacker knows of each observed tensor, read from the defenses the protocol reveals.

Balunović, Dimitrov, Jovanović, Vechev, "Bayesian Framework for Gradient Leakage", ICLR 2022,
Sec. 5-6: heuristic defenses (pruning, quantisation, Soteria) look strong only against attacks
that ignore them; an attacker who models the defense (their eq. 3: the likelihood of the
observed update given the defended one) recovers the data again. Here the model is a mask and
a slack per entry (:class:`~gradleak.attacks.matching.Observation`), which gradient matching
applies to its loss:

- ``prune``: an entry observed as zero was pruned (or was zero) and says nothing about the
  data; only the kept entries are matched.
- ``quantize`` / ``fp16``: the true value lies anywhere in the bin of the observed one, so a
  dummy entry inside that bin costs (almost) nothing: a loss nearly flat inside the bin and
  quadratic outside. Matching the bin rather than its centre stops fitting the rounding error,
  which at a few bits sends most entries to zero. k-bit rounding to nearest: half a step ``s / (2L)``, with the tensor's scale
  ``s = max |g~|`` (the largest entry is its own level); stochastic rounding: a whole step.
- ``soteria``: only the first linear layer's weight gradient is perturbed (Sun et al., CVPR
  2021); it is left out of the loss, and the other layers still carry the image.

``view.defenses`` is the round's public configuration (each defense's spec), not the truth.
Defenses not listed above (noise, secure aggregation) leave the loss as it is. An attack opts in
with ``adaptive=true`` (``idlg:adaptive=true``).
"""

from __future__ import annotations

from typing import Callable

import torch

from gradleak.attacks.matching import Observation
from gradleak.defenses import build_defense
from gradleak.defenses.base import Defense
from gradleak.defenses.soteria import first_linear
from gradleak.federated import trainable_names
from gradleak.threat import ServerView

# Inside a bin, a tenth of the distance to the observed value still counts. With none (pure bin
# matching) a search stops at the first point inside every bin: on face 0, 18.8 dB against the
# oblivious 10.2 at 3 bits, but 27.6 against 32.6 at 6 bits, where the bins are narrow and least
# squares on the bin centres averages the rounding out; with 0.1: 15.7, 22.2 and 31.7 dB.
PULL = 0.1

# How one defense changes what is known of each tensor: (defense, view, observations so far) -> observations
Model = Callable[[Defense, ServerView, list[Observation]], list[Observation]]


def _pruned(defense: Defense, view: ServerView, known: list[Observation]) -> list[Observation]:
    if defense.config.ratio == 0:
        return known
    return [Observation(o.mask * (u != 0).to(u.dtype), o.slack, o.pull) for o, u in zip(known, view.update)]


def _quantised(defense: Defense, view: ServerView, known: list[Observation]) -> list[Observation]:
    # A mean of quantised uploads is no longer on any one client's grid.
    if view.aggregate and view.cohort_size > 1:
        return known
    levels = 2 ** (defense.config.bits - 1) - 1
    bin_half_widths = 1.0 if defense.config.stochastic else 0.5
    return [
        Observation(o.mask, _wider(o.slack, bin_half_widths * u.abs().max() / levels), PULL)
        for o, u in zip(known, view.update)
    ]


def _half_precision(defense: Defense, view: ServerView, known: list[Observation]) -> list[Observation]:
    if view.aggregate and view.cohort_size > 1:
        return known
    tiny = torch.finfo(torch.float16).tiny  # below it float16 is subnormal, with a fixed spacing
    # float16 keeps 10 mantissa bits: the spacing at |g| is 2^(floor(log2 |g|) - 10); round to nearest: half of it.
    half_ulp = [torch.exp2(torch.floor(torch.log2(u.abs().clamp_min(tiny))) - 11) for u in view.update]
    return [Observation(o.mask, _wider(o.slack, h), PULL) for o, h in zip(known, half_ulp)]


def _soteria(defense: Defense, view: ServerView, known: list[Observation]) -> list[Observation]:
    if defense.config.ratio == 0:
        return known
    layer, _ = first_linear(view.model)
    index = trainable_names(view.model).index(f"{layer}.weight" if layer else "weight")
    return [Observation(0.0, o.slack, o.pull) if i == index else o for i, o in enumerate(known)]


def _wider(slack: torch.Tensor | float, more: torch.Tensor | float) -> torch.Tensor | float:
    if isinstance(slack, torch.Tensor) or isinstance(more, torch.Tensor):
        return torch.maximum(torch.as_tensor(slack), torch.as_tensor(more))
    return max(slack, more)


MODELS: dict[str, Model] = {"prune": _pruned, "quantize": _quantised, "fp16": _half_precision, "soteria": _soteria}


def observations(view: ServerView) -> tuple[tuple[Observation, ...] | None, dict[str, str]]:
    """The observation of each update tensor under the defenses ``view`` names, and an info entry
    ``adaptive_to`` naming the ones modelled (for the reconstruction's record).

    ``None`` when no listed defense changes the loss: the attack is then the oblivious one.
    """
    known = [Observation() for _ in view.update]
    modelled = []
    for spec in view.defenses:
        defense = build_defense(spec)
        model = MODELS.get(defense.name)
        if model is not None:
            updated = model(defense, view, known)
            if updated is not known:
                modelled.append(spec)
            known = updated
    return (tuple(known) if modelled else None), {"adaptive_to": "; ".join(modelled) or "nothing"}
