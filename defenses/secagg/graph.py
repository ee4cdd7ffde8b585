"""Who masks with whom: the complete graph (Bonawitz et al. 2017) or a random k-regular graph
(SecAgg+, Bell et al., CCS 2020), and the security parameters a choice implies.

In SecAgg+ each client exchanges keys, pairwise masks and secret shares only with its k
neighbours, so its cost grows with k = O(log n) instead of n. Bell et al. build the graph as a
Harary graph (a circulant where i is joined to i +- 1, ..., i +- k/2) under a uniformly random
relabelling of the clients; the relabelling here is drawn from the OS CSPRNG.

A client's *neighbourhood* is itself plus its neighbours (m = k + 1 parties); its secrets are
shared t-of-m among them. Unmasking needs t live holders for every client that sent shares, so
a neighbourhood tolerates m - t dropouts, and an honest-but-curious server colluding with fewer
than t members of any neighbourhood learns nothing beyond the sum. The default threshold is the
majority t = floor(m / 2) + 1. An *active* server may also show different clients different
survivor sets, collecting one group's shares of some s_v^SK and another's of b_v; the signed
consistency check stops that unless c corrupt clients sign both views, which needs c >= 2t - m.
Active mode therefore requires 2t > m and defaults to t = floor(2m / 3) + 1, which tolerates up
to m/3 - 1 corrupt clients (Bonawitz et al. 2017, Sec. 6: t > 2n/3). The default degree is the smallest even k for which, if every client drops
independently with probability ``design_dropout``, the expected number of neighbourhoods that
cannot be unmasked is below ``DESIGN_FAILURE`` (a binomial tail bound); for small cohorts this
is the complete graph. That k grows like log n (about 40 at n = 100 and 60 at n = 10,000 for a
20% design dropout), as Bell et al. prove it must.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import numpy as np
from scipy.stats import binom

from gradleak.errors import GradleakError

DESIGN_DROPOUT = 0.2  # a client-dropout rate the seed reports as typical (10-30%)
DESIGN_FAILURE = 1e-3  # expected neighbourhoods that cannot be unmasked, at the design dropout


@dataclass(frozen=True)
class Graph:
    """An undirected graph on clients 0..n-1; ``neighbors[u]`` excludes u."""

    neighbors: tuple[frozenset[int], ...]

    @property
    def n(self) -> int:
        return len(self.neighbors)

    @property
    def degree(self) -> int:
        return max((len(nb) for nb in self.neighbors), default=0)

    @property
    def complete(self) -> bool:
        return all(len(nb) == self.n - 1 for nb in self.neighbors)

    def neighborhood(self, u: int) -> frozenset[int]:
        """N[u] = N(u) + {u}: the parties holding shares of u's secrets."""
        return self._neighborhoods[u]

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 of the adjacency lists: the participants and who masks with whom, bound into
        the session so that every client that completes it was shown the same graph."""
        h = hashlib.sha256(self.n.to_bytes(4, "little"))
        for nb in self.neighbors:
            h.update(len(nb).to_bytes(4, "little") + np.array(sorted(nb), dtype="<u4").tobytes())
        return h.digest()

    @cached_property
    def _neighborhoods(self) -> tuple[frozenset[int], ...]:
        return tuple(nb | {u} for u, nb in enumerate(self.neighbors))

    def components(self, alive: Iterable[int]) -> int:
        """Connected components of the subgraph on ``alive``: with more than one, the server could
        unmask the partial sum of each component instead of only the total."""
        alive = set(alive)
        seen: set[int] = set()
        count = 0
        for start in alive:
            if start in seen:
                continue
            count += 1
            stack = [start]
            seen.add(start)
            while stack:
                for v in self.neighbors[stack.pop()] & alive:
                    if v not in seen:
                        seen.add(v)
                        stack.append(v)
        return count


def complete_graph(n: int) -> Graph:
    everyone = frozenset(range(n))
    return Graph(tuple(everyone - {u} for u in range(n)))


def harary_graph(n: int, k: int) -> Graph:
    """A k-regular Harary graph on n clients under a CSPRNG-drawn random relabelling."""
    if not 1 <= k < n:
        raise GradleakError(f"a client can have between 1 and {n - 1} neighbours among {n}, not {k}")
    if k % 2 and n % 2:
        raise GradleakError(f"no {k}-regular graph exists on {n} clients (both odd); choose an even number of neighbours")
    if k == n - 1:
        return complete_graph(n)
    order = list(range(n))
    secrets.SystemRandom().shuffle(order)
    offsets = list(range(1, k // 2 + 1)) + ([n // 2] if k % 2 else [])
    neighbors: list[set[int]] = [set() for _ in range(n)]
    for i in range(n):
        for offset in offsets:
            u, v = order[i], order[(i + offset) % n]
            neighbors[u].add(v)
            neighbors[v].add(u)
    return Graph(tuple(frozenset(nb) for nb in neighbors))


def default_threshold(neighbors: int, active: bool = False) -> int:
    """A majority of the neighbourhood of m = ``neighbors + 1`` parties; above 2m/3 in active mode."""
    m = neighbors + 1
    return min(m, 2 * m // 3 + 1) if active else m // 2 + 1


def unmask_failure_rate(n: int, neighbors: int, threshold: int, dropout: float) -> float:
    """Expected number of clients whose secrets cannot be reconstructed when each client drops
    independently with probability ``dropout`` after sharing its keys.

    A dropped client needs t of its k neighbours alive; a survivor holds its own share, so it
    needs t - 1 of its k neighbours.
    """
    if dropout <= 0:
        return 0.0
    k, t = neighbors, threshold
    dropped = binom.sf(k - t, k, dropout)
    survivor = binom.sf(k - t + 1, k, dropout)
    return float(n * (dropout * dropped + (1 - dropout) * survivor))


def default_neighbors(n: int, design_dropout: float = DESIGN_DROPOUT, active: bool = False) -> int:
    """The smallest even k with the default threshold whose expected unmasking failures at
    ``design_dropout`` stay below ``DESIGN_FAILURE``; n - 1 (complete) when none is smaller."""
    for k in range(2, n - 1, 2):
        if unmask_failure_rate(n, k, default_threshold(k, active), design_dropout) <= DESIGN_FAILURE:
            return k
    return n - 1


@dataclass(frozen=True)
class SecurityParameters:
    """What a graph and threshold guarantee, stated in the protocol's output."""

    clients: int
    neighbors: int
    threshold: int
    active: bool = False

    @property
    def complete(self) -> bool:
        return self.neighbors == self.clients - 1

    @property
    def neighborhood(self) -> int:
        return self.neighbors + 1

    @property
    def tolerated_dropouts(self) -> int:
        """Members a neighbourhood may lose (the client's own dropout included) and still unmask."""
        return self.neighborhood - self.threshold

    @property
    def collusion_bound(self) -> int:
        """Clients per neighbourhood the server may collude with and still learn only the sum."""
        if self.active:
            return min(self.threshold - 1, 2 * self.threshold - self.neighborhood - 1)
        return self.threshold - 1

    def failure_rate(self, dropout: float) -> float:
        return unmask_failure_rate(self.clients, self.neighbors, self.threshold, dropout)

    @property
    def resists_lying_server(self) -> bool:
        """Whether a server that lies about who dropped still learns only the sum: in active mode,
        or on the complete graph. Passive SecAgg+ does not: claiming each of a client's neighbours
        dropped to a different few of their share holders rebuilds their mask keys, after which the
        client's self-mask seed alone unmasks its input, with no colluding client."""
        return self.active or self.complete

    def describe(self, dropout: float | None = None) -> str:
        graph = "complete graph" if self.complete else f"random {self.neighbors}-regular graph (SecAgg+)"
        server = "an active (lying) server" if self.active else "an honest-but-curious server"
        text = (
            f"{self.clients} clients, {graph}, threshold {self.threshold} of {self.neighborhood}: "
            f"each neighbourhood tolerates {self.tolerated_dropouts} dropouts; {server} learns only "
            f"the sum unless it colludes with more than {self.collusion_bound} clients of one neighbourhood"
        )
        if not self.resists_lying_server:
            text += "; a server that lies about dropouts can read single inputs on this sparse graph: use active mode"
        elif self.active:
            text += "; keys, session binding, survivor list and masked inputs are signed"
        if dropout:
            text += f"; expected unrecoverable neighbourhoods at {dropout:.0%} dropout: {self.failure_rate(dropout):.2g}"
        return text


def plan(
    clients: int,
    neighbors: int | None = None,
    threshold: int | None = None,
    design_dropout: float = DESIGN_DROPOUT,
    active: bool | None = None,
) -> SecurityParameters:
    """Fill in the defaults and check a (neighbours, threshold) choice for a cohort.

    ``active=None`` picks active mode exactly when the graph is sparse: passive SecAgg+ does not
    resist a server that lies about dropouts (:attr:`SecurityParameters.resists_lying_server`).
    """
    if clients < 2:
        raise GradleakError(f"secure aggregation needs at least 2 clients, not {clients}: one client's sum is its input")
    if active is None:
        sparse = (default_neighbors(clients, design_dropout) if neighbors is None else neighbors) < clients - 1
        return plan(clients, neighbors, threshold, design_dropout, sparse)
    k = default_neighbors(clients, design_dropout, active) if neighbors is None else neighbors
    if not 1 <= k <= clients - 1:
        raise GradleakError(f"neighbors must be between 1 and {clients - 1} for {clients} clients, not {k}")
    t = default_threshold(k, active) if threshold is None else threshold
    if not 2 <= t <= k + 1:
        raise GradleakError(
            f"threshold must be between 2 and the neighbourhood size {k + 1}, not {t}: "
            "with 1, any single share would reveal a client's secrets"
        )
    if active and 2 * t <= k + 1:
        raise GradleakError(
            f"active mode needs a threshold above half the neighbourhood of {k + 1} (at least {(k + 1) // 2 + 1}), "
            f"not {t}: otherwise a lying server can show two halves different survivor lists (sparse graphs "
            "default to active mode; ask for passive mode explicitly to accept that risk)"
        )
    return SecurityParameters(clients, k, t, active)


def build_graph(parameters: SecurityParameters) -> Graph:
    if parameters.complete:
        return complete_graph(parameters.clients)
    return harary_graph(parameters.clients, parameters.neighbors)
