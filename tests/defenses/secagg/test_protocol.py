"""The protocol end to end: exact sums under dropouts at every round, clean aborts, cost accounting."""

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gradleak.defenses.secagg.fixedpoint import ring_dtype
from gradleak.defenses.secagg.graph import build_graph, complete_graph, default_neighbors, harary_graph, plan
from gradleak.defenses.secagg.messages import ROUNDS, ProtocolAbort
from gradleak.defenses.secagg.protocol import Dropouts, run_secagg
from gradleak.errors import GradleakError


def can_unmask(graph, t, dropouts, active):
    """Independent statement of when unmasking must succeed: at every round, every client that
    still matters keeps t live members in its neighbourhood."""
    live = set(range(graph.n)) - dropouts.at.get("advertise", set())
    if any(len(graph.neighborhood(u) & live) < t for u in live):
        return False
    live -= dropouts.at.get("share", set())
    owners = set(live)
    if any(len(graph.neighborhood(u) & live) < t for u in owners):
        return False
    for name in ("mask", "consistency", "unmask"):
        if name == "consistency" and not active:
            continue
        live -= dropouts.at.get(name, set())
        if any(len(graph.neighborhood(u) & live) < t for u in owners):
            return False
        if name == "mask" and graph.components(live) > 1:  # the server could unmask each part
            return False
    return True


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(3, 14),
    secagg_plus=st.booleans(),
    active=st.booleans(),
    bits=st.sampled_from([32, 16, 20, 64]),
    data=st.data(),
)
def test_the_unmasked_sum_is_exactly_the_survivors_plaintext_sum(n, secagg_plus, active, bits, data):
    k = data.draw(st.sampled_from(range(2, n - 1, 2))) if secagg_plus and n > 3 else n - 1
    parameters = plan(n, k, active=active)
    graph = build_graph(parameters)
    rounds = [r for r in ROUNDS if active or r != "consistency"]
    count = data.draw(st.sampled_from(range(int(0.3 * n + 0.5) + 1)), label="dropouts (0-30%)")
    dropped = data.draw(st.permutations(range(n)))[:count]
    at: dict[str, set[int]] = {}
    for u in dropped:
        at.setdefault(data.draw(st.sampled_from(rounds)), set()).add(u)
    dropouts = Dropouts({r: frozenset(us) for r, us in at.items()})
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    dtype = ring_dtype(bits)
    inputs = [(rng.integers(0, 2**64, 9, dtype=np.uint64) & np.uint64((1 << bits) - 1)).astype(dtype) for _ in range(n)]

    event(f"{len(dropped)} dropouts")
    if not can_unmask(graph, parameters.threshold, dropouts, active):
        event("abort below threshold")
        with pytest.raises(ProtocolAbort, match="threshold|disconnected"):
            run_secagg(inputs.__getitem__, parameters, 9, bits, dropouts, graph=graph)
        return
    result = run_secagg(inputs.__getitem__, parameters, 9, bits, dropouts, graph=graph)
    in_sum = set(range(n)) - at.get("advertise", set()) - at.get("share", set()) - at.get("mask", set())
    assert result.survivors == in_sum
    expected = sum((inputs[u].astype(object) for u in in_sum), np.zeros(9, dtype=object)) % (1 << bits)
    assert result.total.astype(object).tolist() == expected.tolist()


def test_two_hundred_clients_with_secagg_plus_sum_exactly():
    n, dim = 200, 32
    parameters = plan(n, active=False)  # passive SecAgg+: only when asked for explicitly
    assert not parameters.complete and parameters.neighbors < 80
    rng = np.random.default_rng(1)
    inputs = rng.integers(0, 2**32, (n, dim), dtype=np.uint64).astype(np.uint32)
    result = run_secagg(inputs.__getitem__, parameters, dim, 32,
                        Dropouts.fraction(n, 0.2, "mask", rng))
    survivors = sorted(result.survivors)
    assert len(survivors) == 160 and result.components == 1
    assert np.array_equal(result.total, inputs[survivors].sum(0, dtype=np.uint64).astype(np.uint32))


def test_too_few_survivors_abort_cleanly(session):
    s = session(6, threshold=4)
    s.step()
    s.step()
    replies = s.deliver(skip={0, 1, 2})  # three of six drop before masking: 3 < t = 4
    with pytest.raises(ProtocolAbort, match="fewer than the threshold 4"):
        s.collect(replies)


def test_dropouts_exactly_at_the_threshold_still_unmask(session):
    s = session(6, threshold=4)
    s.step()
    s.step()
    s.step(skip={0, 1})  # 4 survivors = t
    assert np.array_equal(s.finish(), s.expected(range(2, 6)))


def test_no_client_reveals_both_secrets_of_anyone(session):
    s = session(7, threshold=4)
    s.step()
    s.step()
    s.step(skip={2, 5})
    responses = s.step()
    for response in responses:
        assert not set(response.self_mask_shares) & set(response.key_shares)
        assert set(response.key_shares) == {2, 5}


def test_the_graph_is_k_regular_and_relabelled_at_random():
    graph = harary_graph(50, 6)
    assert {len(nb) for nb in graph.neighbors} == {6}
    assert all(u in graph.neighbors[v] for u in range(50) for v in graph.neighbors[u])
    assert graph.components(range(50)) == 1
    assert graph.neighbors != harary_graph(50, 6).neighbors  # a fresh CSPRNG permutation each time
    odd = harary_graph(10, 3)
    assert {len(nb) for nb in odd.neighbors} == {3}
    with pytest.raises(GradleakError, match="both odd"):
        harary_graph(9, 3)
    assert complete_graph(4).complete


def test_defaults_are_complete_for_small_cohorts_and_logarithmic_for_large_ones():
    assert plan(10).complete and plan(10).threshold == 6
    degrees = [default_neighbors(n) for n in (100, 1000, 10_000)]
    assert degrees == sorted(degrees) and degrees[-1] < 100
    big = plan(10_000)
    assert big.failure_rate(0.2) <= 1e-3 and big.tolerated_dropouts == big.neighborhood - big.threshold
    assert "tolerates" in big.describe(0.2) and "10000 clients" in big.describe(0.2)


@pytest.mark.parametrize("kwargs,message", [
    (dict(clients=1), "at least 2 clients"), (dict(clients=5, neighbors=5), "between 1 and 4"),
    (dict(clients=5, threshold=1), "between 2"), (dict(clients=5, threshold=6), "between 2"),
    (dict(clients=8, threshold=4, active=True), "above half"),
])
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(GradleakError, match=message):
        plan(**kwargs)


def test_costs_are_accounted_per_party_and_round():
    n, dim = 20, 1000
    result = run_secagg(lambda u: np.zeros(dim, np.uint32), plan(n), dim, 32,
                        Dropouts({"mask": frozenset({3})}))
    summary = result.summary()
    # The masked upload alone is 4 bytes per entry, as large as the float32 update.
    assert summary["client_bytes_sent"] > 4 * dim
    assert 1.0 < summary["upload_expansion"] < 2.5
    # vector, header (5), session id (16), count of rejected senders (4)
    assert result.cost.rounds["mask"]["client_bytes_sent"] == 19 * (4 * dim + 5 + 16 + 4)
    assert summary["server_bytes_received"] == result.cost.client_sent.sum()
    assert summary["client_seconds"] > 0 and summary["server_seconds"] > 0
    assert result.cost.rounds["mask"]["clients"] == 19
