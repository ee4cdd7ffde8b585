"""A secure-aggregation session driven round by round, so tests can forge, drop or reorder messages."""

from __future__ import annotations

import numpy as np
import pytest

from gradleak.defenses.secagg import keys
from gradleak.defenses.secagg.client import SecAggClient
from gradleak.defenses.secagg.fixedpoint import ring_dtype
from gradleak.defenses.secagg.graph import build_graph, plan
from gradleak.defenses.secagg.server import SecAggServer


class Session:
    """n clients with random inputs in Z_2^bits and a server; ``requests`` are the pending server messages."""

    def __init__(self, n: int, dim: int = 16, neighbors=None, threshold=None, active=None, bits=32, seed=0, graph=None):
        self.parameters = plan(n, neighbors, threshold, active=active)
        active = self.parameters.active
        self.graph = graph or build_graph(self.parameters)
        self.bits, self.dtype = bits, ring_dtype(bits)
        rng = np.random.default_rng(seed)
        top = np.uint64((1 << bits) - 1)
        self.inputs = [(rng.integers(0, 2**64, dim, dtype=np.uint64) & top).astype(self.dtype) for _ in range(n)]
        identities = [keys.new_identity() for _ in range(n)] if active else [None] * n
        self.pki = {u: keys.identity_public(i) for u, i in enumerate(identities)} if active else None
        self.identities = identities
        self.clients = [SecAggClient(u, lambda u=u: self.inputs[u], identities[u], self.pki) for u in range(n)]
        self.server = SecAggServer(self.parameters, self.graph, dim, bits, active, self.pki, keep_uploads=True)
        self.requests = self.server.start()

    def deliver(self, skip=()) -> list:
        """Hand every pending request to its client; returns the replies (not yet given to the server)."""
        return [self.clients[r.recipient].handle(r) for r in self.requests if r.recipient not in skip]

    def collect(self, replies) -> None:
        for reply in replies:
            self.server.receive(reply)
        self.requests = self.server.close_round()

    def step(self, skip=()) -> list:
        replies = self.deliver(skip)
        self.collect(replies)
        return replies

    def finish(self) -> np.ndarray:
        while self.server.phase != "done":
            self.step()
        return self.server.result

    def expected(self, survivors) -> np.ndarray:
        total = np.zeros_like(self.inputs[0])
        for u in survivors:
            total += self.inputs[u]
        if self.bits < 8 * self.dtype.itemsize:
            total &= self.dtype.type((1 << self.bits) - 1)
        return total


@pytest.fixture
def session():
    return Session
