"""Run a whole secure-aggregation session in one process and account for its cost.

:func:`run_secagg` plays the network: it hands each server request to its client, each reply
to the server, drops clients at the rounds a :class:`Dropouts` schedule names, and records the
bytes every party sends and receives and the seconds each spends computing (client and server
alike, measured around their own code only). Clients are simulated one after another, and each
client's input is asked for only when it masks it; the server holds round 2's masked uploads
until that round closes (so an excluded client's never enters the sum), then only the sum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from gradleak.defenses.secagg import keys
from gradleak.defenses.secagg.client import SecAggClient
from gradleak.defenses.secagg.graph import Graph, SecurityParameters, build_graph
from gradleak.defenses.secagg.messages import ROUNDS, TITLES, MaskedInput
from gradleak.defenses.secagg.server import SecAggServer
from gradleak.errors import GradleakError
from gradleak.progress import progress

FLOAT32_BYTES = 4


@dataclass(frozen=True)
class Dropouts:
    """Which clients drop at which round: they send nothing from that round on.

    ``"mask"`` means after ShareKeys, before sending the masked input: the costly case, where
    the server must reconstruct the dropped clients' keys and recompute their pairwise masks.
    """

    at: Mapping[str, frozenset[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.at) - set(ROUNDS)
        if unknown:
            raise GradleakError(f"unknown dropout round(s) {', '.join(sorted(unknown))}; choose from {', '.join(ROUNDS)}")

    @classmethod
    def fraction(cls, clients: int, fraction: float, at_round: str, rng: np.random.Generator) -> "Dropouts":
        """Drop ``fraction`` of the clients (rounded to nearest), chosen by ``rng``, at ``at_round``."""
        if not 0 <= fraction < 1:
            raise GradleakError(f"the dropout fraction must be in [0, 1), not {fraction}")
        count = int(np.floor(fraction * clients + 0.5))
        return cls({at_round: frozenset(int(u) for u in rng.choice(clients, size=count, replace=False))})

    def all(self) -> frozenset[int]:
        return frozenset().union(*self.at.values()) if self.at else frozenset()


@dataclass
class Cost:
    """Bytes and seconds per party and per round."""

    clients: int
    client_sent: np.ndarray = field(init=False)
    client_received: np.ndarray = field(init=False)
    client_seconds: np.ndarray = field(init=False)
    server_sent: int = 0
    server_received: int = 0
    server_seconds: float = 0.0
    rounds: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client_sent = np.zeros(self.clients, dtype=np.int64)
        self.client_received = np.zeros(self.clients, dtype=np.int64)
        self.client_seconds = np.zeros(self.clients)

    def round(self, name: str) -> dict[str, float]:
        return self.rounds.setdefault(
            name,
            {"clients": 0, "client_bytes_sent": 0, "client_bytes_received": 0, "client_seconds": 0.0, "server_seconds": 0.0},
        )


@dataclass(frozen=True, eq=False)
class SecAggResult:
    """The unmasked sum of the survivors' inputs in Z_R, who survived, and what it cost."""

    total: np.ndarray
    survivors: frozenset[int]
    parameters: SecurityParameters
    dim: int
    bits: int
    cost: Cost
    components: int
    masked_uploads: tuple[MaskedInput, ...] = ()
    excluded: Mapping[int, str] = field(default_factory=dict)  # client -> why the server left it out
    cheaters: frozenset[int] = frozenset()  # clients caught sending forged unmasking shares

    @property
    def dropped(self) -> frozenset[int]:
        return frozenset(range(self.parameters.clients)) - self.survivors

    def summary(self) -> dict[str, float]:
        """Per-client figures are means over the survivors (the clients whose inputs are in the sum)."""
        cost, alive = self.cost, sorted(self.survivors)
        clear = FLOAT32_BYTES * self.dim
        sent = float(cost.client_sent[alive].mean())
        received = float(cost.client_received[alive].mean())
        return {
            "clients": self.parameters.clients,
            "dim": self.dim,
            "bits": self.bits,
            "neighbors": self.parameters.neighbors,
            "threshold": self.parameters.threshold,
            "active": self.parameters.active,
            "resists_lying_server": self.parameters.resists_lying_server,
            "tolerated_dropouts": self.parameters.tolerated_dropouts,
            "survivors": len(self.survivors),
            "dropped": len(self.dropped),
            "excluded": len(self.excluded),
            "cheaters": len(self.cheaters),
            "survivor_components": self.components,
            "client_bytes_sent": sent,
            "client_bytes_received": received,
            "client_bytes_sent_max": float(cost.client_sent[alive].max()),
            "plaintext_bytes": clear,
            "expansion": (sent + received) / clear,
            "upload_expansion": sent / clear,
            "client_seconds": float(cost.client_seconds[alive].mean()),
            "client_seconds_max": float(cost.client_seconds[alive].max()),
            "client_seconds_total": float(cost.client_seconds.sum()),
            "server_bytes_sent": cost.server_sent,
            "server_bytes_received": cost.server_received,
            "server_seconds": cost.server_seconds,
        }


def run_secagg(
    inputs: Callable[[int], np.ndarray],
    parameters: SecurityParameters,
    dim: int,
    bits: int = 32,
    dropouts: Dropouts = Dropouts(),
    keep_uploads: bool = False,
    graph: Graph | None = None,
    model_digests: Sequence[bytes] | None = None,
) -> SecAggResult:
    """Run one session: client u masks ``inputs(u)`` (a length-``dim`` vector in Z_R).

    ``parameters.active`` selects the active-adversary mode; ``graph`` defaults to a fresh one
    drawn for ``parameters``. ``model_digests[u]`` is the digest of the model client u received,
    which it binds into the session (``None``: unbound); clients that received different models
    abort with :class:`~gradleak.defenses.secagg.messages.ProtocolAbort`.
    """
    n, active = parameters.clients, parameters.active
    if model_digests is not None and len(model_digests) != n:
        raise GradleakError(f"{len(model_digests)} model digests for {n} clients; pass one per client")
    digests = list(model_digests) if model_digests is not None else [b""] * n
    cost = Cost(n)
    pki, identities = None, [None] * n
    if active:
        identities = [keys.new_identity() for _ in range(n)]
        pki = {u: keys.identity_public(identity) for u, identity in enumerate(identities)}
    clients = [SecAggClient(u, lambda u=u: inputs(u), identities[u], pki, model_digest=digests[u]) for u in range(n)]

    def timed_server(name, call, *args):
        start = time.perf_counter()
        try:
            return call(*args)
        finally:
            elapsed = time.perf_counter() - start
            cost.server_seconds += elapsed
            cost.round(name)["server_seconds"] += elapsed

    server = timed_server(
        "advertise", SecAggServer, parameters, graph or build_graph(parameters), dim, bits, active, pki, keep_uploads
    )
    requests = timed_server("advertise", server.start)
    alive = set(range(n))
    rounds = [r for r in ROUNDS if active or r != "consistency"]
    for name in rounds:
        alive -= dropouts.at.get(name, frozenset())
        per_round = cost.round(name)
        for request in progress(requests, desc=f"secagg {TITLES[name]}", unit="client"):
            u = request.recipient
            size = request.nbytes
            cost.server_sent += size
            if u not in alive:
                continue
            cost.client_received[u] += size
            per_round["clients"] += 1
            per_round["client_bytes_received"] += size
            start = time.perf_counter()
            reply = clients[u].handle(request)
            elapsed = time.perf_counter() - start
            cost.client_seconds[u] += elapsed
            per_round["client_seconds"] += elapsed
            cost.client_sent[u] += reply.nbytes
            cost.server_received += reply.nbytes
            per_round["client_bytes_sent"] += reply.nbytes
            timed_server(name, server.receive, reply)
        requests = timed_server(name, server.close_round)
    graph = server.graph
    return SecAggResult(
        total=server.result,
        survivors=server.survivors,
        parameters=parameters,
        dim=dim,
        bits=bits,
        cost=cost,
        components=graph.components(server.survivors),
        masked_uploads=tuple(server.masked_uploads),
        excluded=dict(server.excluded),
        cheaters=frozenset(server.cheaters),
    )
