"""Several rounds on the same global model, a cohort per round: clients join and leave.

The server picks each round's cohort, so it knows who is in each aggregate and with how many
examples; it keeps one :class:`Release` per round. Each round is one call of
:func:`gradleak.federated.run_round`, with its own randomness (a seeded session derives one
noise seed per round: DP noise repeated across rounds would cancel in a difference).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from gradleak.defenses import DefenseStack, Update
from gradleak.errors import GradleakError
from gradleak.federated import Client, Round, run_round
from gradleak.threat import LocalTraining, Normalization, ServerView, Truth

__all__ = ["Release", "Session", "run_session"]


@dataclass(frozen=True, eq=False)
class Release:
    """What the server keeps of one round: who was in it, their example counts, and the release.

    ``update`` is the released aggregate (after server-stage DP noise); ``scale`` is the factor
    the server stage multiplied the weighted mean by (noise aside), so ``update / scale`` stands
    for the example-weighted mean over ``client_ids``.
    """

    client_ids: tuple[int, ...]
    weights: tuple[int, ...]
    update: Update
    scale: float = 1.0

    def weighted_sum(self) -> Update:
        """``sum_k n_k u_k`` (plus whatever noise the release carries): the mean's weighting undone, in
        float64 so that a difference of two sums adds no rounding of its own."""
        total = sum(self.weights)
        return tuple(t.double() * (total / self.scale) for t in self.update)


@dataclass(frozen=True, eq=False)
class Session:
    """The rounds of a session, and the releases the server holds from them, in order."""

    rounds: tuple[Round, ...]
    releases: tuple[Release, ...]
    clients: dict[int, Client]  # every participant's data in the last round it took part in (the truth)

    @property
    def view(self) -> ServerView:
        """The last round's view, carrying every round's release (``view.releases``)."""
        return dataclasses.replace(self.rounds[-1].view, releases=self.releases)

    @property
    def refused(self) -> dict[int, str]:
        """Clients that refused a round's model (receive-stage defenses), over every round."""
        return {k: why for round_ in self.rounds for k, why in round_.refused.items()}

    def changed(self) -> tuple[int, ...]:
        """The clients in the last round but not the one before, or in the one before but not the last."""
        if len(self.releases) < 2:
            return ()
        before, after = set(self.releases[-2].client_ids), set(self.releases[-1].client_ids)
        return tuple(sorted(before ^ after))

    @property
    def truth(self) -> Truth:
        """The data of the clients that joined or left between the last two rounds."""
        changed = [self.clients[i] for i in self.changed()]
        if not changed:
            raise GradleakError("no client joined or left between the last two rounds; nothing to difference")
        return Truth(
            images=torch.cat([c.images for c in changed]),
            labels=torch.cat([c.labels for c in changed]),
            client_ids=tuple(c.client_id for c in changed),
        )


def round_seeds(noise_seed: int | None, rounds: int) -> list[int | None]:
    """One seed per round from ``noise_seed`` (None: every round draws private randomness)."""
    if noise_seed is None:
        return [None] * rounds
    return [int(s) for s in np.random.SeedSequence(noise_seed).generate_state(rounds, np.uint64) % (2**63 - 1)]


def release_scale(defenses: DefenseStack, num_clients: int) -> float:
    """The factor the server-stage defenses multiply the weighted mean by (DP-FedAvg: K / qN)."""
    scale = 1.0
    for defense in defenses.at("server"):
        scale *= defense.release_scale(num_clients)
    return scale


def run_session(
    global_model: nn.Module,
    normalization: Normalization,
    cohorts: Sequence[Sequence[Client]],
    num_classes: int,
    local: LocalTraining = LocalTraining(),
    defenses: DefenseStack = DefenseStack(),
    model_mode: str = "train",
    noise_seed: int | None = None,
    known_labels: bool = False,
) -> Session:
    """Run one round per cohort on the same ``global_model``; a client keeps its ``client_id``
    across rounds (its data may change: fresh mini-batches)."""
    if not cohorts:
        raise GradleakError("a session needs at least one cohort")
    rounds, releases, clients = [], [], {}
    for cohort, seed in zip(cohorts, round_seeds(noise_seed, len(cohorts))):
        ids = [c.client_id for c in cohort]
        if len(set(ids)) != len(ids):
            raise GradleakError(f"a cohort lists a client twice: {ids}")
        round_ = run_round(global_model, normalization, cohort, num_classes, local=local, defenses=defenses,
                           model_mode=model_mode, noise_seed=seed, known_labels=known_labels)
        # a secure aggregate holds only the survivors, and the server knows who they are
        survivors = set(round_.truth.client_ids) if round_.view.aggregate else set(ids)
        members = [c for c in cohort if c.client_id in survivors]
        releases.append(Release(
            client_ids=tuple(c.client_id for c in members),
            weights=tuple(len(c) for c in members),
            update=round_.released,
            scale=release_scale(defenses, len(members)),
        ))
        rounds.append(round_)
        clients.update({c.client_id: c for c in cohort})
    return Session(tuple(rounds), tuple(releases), clients)

