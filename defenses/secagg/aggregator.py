"""``secagg``: secure aggregation as the aggregation stage of a federated round.

Each client's update (a tuple of tensors) is flattened, clipped and quantised to the ring grid
(:mod:`~gradleak.defenses.secagg.fixedpoint`) and multiplied by its example count n_k, so that
the unmasked sum divided by sum(n_k) is FedAvg's weighted mean. The real protocol then runs
(:func:`~gradleak.defenses.secagg.protocol.run_secagg`): the server relays keys and encrypted
shares, receives only masked vectors, and unmasks only their sum. The returned aggregation holds
that mean (quantisation included: it is what the server sees), the masked vectors the server
received, the protocol's cost, and ``contributors``: the positions of the clients whose updates
are in the sum. Clients that drop out are not, and the aggregate is the mean over the survivors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal, Sequence

import numpy as np
import torch

from gradleak.defenses import register
from gradleak.defenses.base import Aggregation, Defense, Update
from gradleak.defenses.secagg.fixedpoint import MAX_BITS, MAX_VALUE_BITS, FixedPoint
from gradleak.defenses.secagg.graph import DESIGN_DROPOUT, SecurityParameters, plan
from gradleak.defenses.secagg.protocol import Dropouts, run_secagg
from gradleak.errors import GradleakError
from gradleak.spec import MAX_CLIENTS, Range, Seed

DropoutRound = Literal["advertise", "share", "mask", "consistency", "unmask"]


@dataclass(frozen=True)
class SecAggConfig:
    neighbors: Annotated[int | None, Range(1, MAX_CLIENTS)] = None  # SecAgg+ degree k; None: complete for small cohorts, else O(log n) (graph.py)
    threshold: Annotated[int | None, Range(2, MAX_CLIENTS)] = None  # t per neighbourhood of k + 1; None: a majority (above 2/3 if active)
    bits: Annotated[int, Range(1, MAX_BITS)] = 32  # b, the ring Z_{2^b}: a masked entry is as large as a float32
    value_bits: Annotated[int | None, Range(2, MAX_VALUE_BITS)] = None  # k, including the sign; None: the most that cannot wrap for the round
    clip: Annotated[float, Range(0, None, low_open=True)] = 8.0  # per-coordinate range [-clip, clip]; model updates stay well inside it
    dropout: Annotated[float, Range(0, 1, high_open=True)] = 0.0  # fraction of the cohort that drops out (simulated)
    dropout_round: DropoutRound = "mask"  # "mask": after ShareKeys, the costliest case for the server
    design_dropout: Annotated[float, Range(0, 1, high_open=True)] = DESIGN_DROPOUT  # the dropout rate the default neighbour count is sized for
    active: bool | None = None  # signed keys and a ConsistencyCheck round; None: on for sparse graphs
    bind_model: bool = True  # each client commits to the digest of the model it received; differing digests abort (stops model inconsistency)
    seed: Seed | None = None  # who drops and the stochastic rounding; None: from the round's generator

    def __post_init__(self) -> None:
        if not 0 <= self.dropout < 1:
            raise GradleakError(f"dropout must be a fraction in [0, 1), not {self.dropout}")
        if self.dropout_round == "consistency" and not self.active:
            raise GradleakError("the consistency round exists only with active=true")


def flatten(update: Update) -> np.ndarray:
    return torch.cat([t.detach().reshape(-1) for t in update]).to("cpu", torch.float64).numpy()


def unflatten(vector: np.ndarray, like: Update) -> Update:
    flat = torch.from_numpy(np.ascontiguousarray(vector))
    pieces, start = [], 0
    for t in like:
        pieces.append(flat[start : start + t.numel()].reshape(t.shape).to(device=t.device, dtype=t.dtype))
        start += t.numel()
    return tuple(pieces)


@register
class SecureAggregation(Defense):
    """Bonawitz et al. (CCS 2017) secure aggregation, SecAgg+ (Bell et al., CCS 2020) for large cohorts."""

    name = "secagg"
    stage = "aggregation"
    Config = SecAggConfig

    def sized_for(self, bound: float) -> "SecureAggregation":
        """This aggregation with its range ``[-clip, clip]`` widened to at least ``bound``: distributed
        DP's noised uploads (``DistributedDP.upload_range``) must pass through the grid unclipped,
        or the sum loses the noise its accountant counts on."""
        if bound <= self.config.clip:
            return self
        return SecureAggregation(dataclasses.replace(self.config, clip=bound))

    def parameters(self, clients: int) -> SecurityParameters:
        c = self.config
        return plan(clients, c.neighbors, c.threshold, c.design_dropout, c.active)

    def encoder(self, total_weight: int) -> FixedPoint:
        c = self.config
        if c.value_bits is None:
            return FixedPoint.fitting(total_weight, c.clip, c.bits)
        encoder = FixedPoint(c.clip, c.value_bits, c.bits)
        encoder.check_budget(total_weight)
        return encoder

    def aggregate(
        self, uploads: Sequence[Update], weights: Sequence[int], generator: torch.Generator,
        digests: Sequence[bytes] | None = None,
    ) -> Aggregation:
        """``digests``: the digest of the model each client received; with ``bind_model`` the clients
        bind them into the session, and a round whose clients received different models aborts
        (:class:`~gradleak.defenses.secagg.messages.ProtocolAbort`). Without digests nothing is bound."""
        c = self.config
        weights = [int(w) for w in weights]
        if len(weights) != len(uploads) or any(w < 1 for w in weights):
            raise GradleakError("secure aggregation needs one positive example count per upload")
        if digests is not None and len(digests) != len(uploads):
            raise GradleakError(f"secure aggregation got {len(digests)} model digests for {len(uploads)} uploads; pass one per upload")
        bound = digests if c.bind_model else None
        parameters = self.parameters(len(uploads))
        encoder = self.encoder(sum(weights))
        seed = c.seed
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        rng = np.random.default_rng(seed)
        flat = [flatten(u) for u in uploads]
        encoded = [encoder.encode(x, rng, w) for x, w in zip(flat, weights)]
        dropouts = Dropouts.fraction(len(uploads), c.dropout, c.dropout_round, rng)
        result = run_secagg(
            lambda u: encoded[u], parameters, len(flat[0]), c.bits, dropouts, keep_uploads=True, model_digests=bound
        )
        contributors = tuple(sorted(result.survivors))
        mean = encoder.decode(result.total, sum(weights[u] for u in contributors))
        clipped = sum(int((np.abs(x) > c.clip).sum()) for x in flat) / sum(x.size for x in flat)
        return Aggregation(
            aggregate=unflatten(mean, uploads[0]),
            individual=False,
            masked_uploads=result.masked_uploads,
            cost={
                **result.summary(), "dropout": c.dropout, "value_bits": encoder.value_bits, "clipped_fraction": clipped,
                "model_bound": bound is not None,
            },
            contributors=contributors,
        )
