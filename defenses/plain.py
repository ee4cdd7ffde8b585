"""Plain aggregation: the server receives every update in the clear and averages them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from gradleak.defenses.base import Aggregation, Defense, Update


def weighted_mean(uploads: Sequence[Update], weights: Sequence[int]) -> Update:
    """FedAvg's aggregate: sum_k n_k u_k / sum_k n_k."""
    total = float(sum(weights))
    return tuple(
        sum(w * upload[i] for upload, w in zip(uploads, weights)) / total for i in range(len(uploads[0]))
    )


class PlainAggregation(Defense):
    """No defense in aggregation: what every FL deployment without secure aggregation does."""

    name = "plain"
    stage = "aggregation"

    @dataclass(frozen=True)
    class Config:
        pass

    def aggregate(
        self, uploads: Sequence[Update], weights: Sequence[int], generator: torch.Generator,
        digests: Sequence[bytes] | None = None,
    ) -> Aggregation:
        """The weighted mean; ``digests`` are ignored (no protocol to bind them into)."""
        return Aggregation(aggregate=weighted_mean(uploads, weights), individual=True, masked_uploads=tuple(uploads))
