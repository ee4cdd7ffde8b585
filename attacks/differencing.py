"""Differencing across rounds: a client joins (or leaves) and two aggregates give its update away.

With the same global model and cohorts S and S ∪ {t}, the example-weighted sums satisfy
``Sum(S ∪ {t}) - Sum(S) = n_t u_t``, exactly up to secure aggregation's fixed-point rounding
(../shared/PAPERS.md, "Across rounds"; the gradient disaggregation of Lam et al., ICML 2021,
generalises it to many rounds). The server knows each cohort and its example counts, so it undoes
the mean's weighting (``Release.weighted_sum``), subtracts, divides by ``n_t``, and runs any
single-update attack (``inner``) on a view of the result. The difference also tells which classes
the client holds: for a linear last layer with softmax cross-entropy the bias gradient of class c
is ``(1/B) sum_i (p_ic - y_ic)``, negative when c is among the labels and ``B p̄_c < 1`` (the iDLG
argument of Zhao et al. 2020, per class).

Only the releases are read: under central DP-FedAvg the server itself also holds the un-noised
aggregates, so there its noise protects against whoever receives the releases, not the server.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated

import torch

from gradleak.attacks import build_attack, register
from gradleak.attacks.base import Attack
from gradleak.attacks.dlg import MAX_ITERATIONS
from gradleak.attacks.labels import last_layer, mean_gradient
from gradleak.errors import GradleakError
from gradleak.session import Release
from gradleak.spec import SEED_LIMIT, Range, parse_spec
from gradleak.threat import Reconstruction, ServerView


def difference(before: Release, after: Release) -> tuple[tuple[torch.Tensor, ...], int, int]:
    """The update of the one client in exactly one of two releases, its id and example count."""
    changed = set(before.client_ids) ^ set(after.client_ids)
    if len(changed) != 1:
        raise GradleakError(
            f"differencing needs two rounds whose cohorts differ by one client, but {len(changed)} differ; "
            "pick rounds where exactly one client joined or left"
        )
    (client,) = changed
    joined = client in after.client_ids
    held = after if joined else before
    weight = held.weights[held.client_ids.index(client)]
    plus, minus = (after, before) if joined else (before, after)
    update = tuple((a - b) / weight for a, b in zip(plus.weighted_sum(), minus.weighted_sum()))
    return update, client, weight


def client_view(view: ServerView) -> ServerView:
    """The view of the one client that joined or left between the last two releases in ``view.releases``."""
    releases = view.releases
    if len(releases) < 2:
        raise GradleakError(
            "differencing needs the releases of two rounds (a session, gradleak.session), but the view holds "
            f"{len(releases)}; run it where a client joins: gradleak attack --attack differencing --cohort-size 8"
        )
    update, _, weight = difference(releases[-2], releases[-1])
    update = tuple(u.to(device=o.device, dtype=o.dtype) for u, o in zip(update, view.update))
    return dataclasses.replace(view, update=update, num_examples=weight, cohort_size=1, aggregate=False,
                               masked_uploads=(), known_labels=None, releases=())


def class_signal(view: ServerView) -> torch.Tensor:
    """Per class, the last layer's bias gradient (or weight row sum) the update stands for: negative if held."""
    _, weight, bias = last_layer(view)
    if bias is not None:
        return mean_gradient(view, view.update[bias])
    return mean_gradient(view, view.update[weight]).sum(dim=1)


def held_classes(view: ServerView) -> torch.Tensor:
    """A boolean per class: does the update's client hold an example of it (count at least one: a
    negative signal). Exact while ``B p̄_c < 1``; a saturated softmax (LeNet-Zhu's U(-0.5, 0.5)
    start) breaks that, and then the estimate of :func:`~gradleak.attacks.labels.count_labels`
    does no better."""
    return class_signal(view) < 0


@register
class Differencing(Attack):
    name = "differencing"
    across_rounds = True  # reads the releases of a session, not one round

    @dataclass(frozen=True)
    class Config:
        inner: str = "idlg"  # the single-update attack run on the difference (a spec: idlg, ig:restarts=2, ...)
        iterations: Annotated[int | None, Range(1, MAX_ITERATIONS)] = None  # handed to the inner attack
        seed: Annotated[int | None, Range(0, SEED_LIMIT)] = None  # handed to the inner attack

    def __init__(self, config=None) -> None:
        super().__init__(config)
        if parse_spec(self.config.inner).name == self.name:
            raise GradleakError("differencing cannot run itself as its inner attack; give inner=idlg or another")
        overrides = {k: getattr(self.config, k) for k in ("iterations", "seed") if getattr(self.config, k) is not None}
        self.inner = build_attack(self.config.inner, **overrides)

    def reconstruct(self, view: ServerView) -> Reconstruction:
        target = client_view(view)
        reconstruction = self.inner.reconstruct(target)
        held = torch.nonzero(held_classes(target)).flatten().tolist()
        reconstruction.info.update(inner=self.config.inner, held_classes=",".join(map(str, held)))
        return reconstruction
