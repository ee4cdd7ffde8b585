"""Attacks by a malicious server (and one malicious client), each run against the real client and
server state machines with forged messages, and each now refused with a clear error or absorbed
with the exact sum of the honest clients."""

import dataclasses
import os

import numpy as np
import pytest

from gradleak.defenses.secagg import keys, prg, shamir
from gradleak.defenses.secagg.client import ClientPolicy, SecAggClient, point
from gradleak.defenses.secagg.constants import MASK_PURPOSE
from gradleak.defenses.secagg.graph import Graph, plan
from gradleak.defenses.secagg.messages import (
    KeyBroadcast,
    ProtocolAbort,
    ProtocolError,
    Setup,
    SharesRelay,
    SurvivorList,
    UnmaskRequest,
)

N, VICTIM = 5, 4


def split_view_attack(s, threshold: int) -> np.ndarray:
    """Bonawitz et al. (2017, Sec. 6) against t <= m/2 in active mode: two halves of the cohort
    see two survivor lists, each half signs its own, and the server collects both secrets of the
    victim. Returns the victim's input read off its masked upload."""
    everyone = frozenset(range(N))
    setups = [dataclasses.replace(r, threshold=threshold) for r in s.requests]
    adverts = {m.sender: m for m in (s.clients[r.recipient].handle(r) for r in setups)}
    shares = {m.sender: m for m in (s.clients[u].handle(KeyBroadcast(u, adverts)) for u in range(N))}
    uploads = {}
    for u in range(N):
        relay = SharesRelay(u, {v: shares[v].ciphertexts[u] for v in range(N) if v != u})
        uploads[u] = s.clients[u].handle(relay).vector
    told_dropped, told_alive = {0, 1}, {2, 3}  # the victim is told it survived, like group B
    views = {u: everyone - {VICTIM} if u in told_dropped else everyone for u in range(N)}
    signatures = {u: s.clients[u].handle(SurvivorList(u, views[u], N)).signature for u in range(N)}
    key_shares, seed_shares = [], []
    for group in (told_dropped, told_alive):
        shown = {v: signatures[v] for v in group}
        for u in group:
            response = s.clients[u].handle(UnmaskRequest(u, views[u], everyone - views[u], shown))
            key_shares += [(point(u), y) for v, y in response.key_shares.items() if v == VICTIM]
            seed_shares += [(point(u), y) for v, y in response.self_mask_shares.items() if v == VICTIM]
    mask_key = keys.private_key_from_int(shamir.reconstruct(key_shares, threshold))
    seed = shamir.reconstruct(seed_shares, threshold).to_bytes(32, "little")
    upload = uploads[VICTIM].copy()
    prg.add_mask(upload, seed, -1)
    bound = setups[VICTIM].bound
    for v in range(N - 1):  # every other client has a smaller id: the victim subtracted PRG(s_v,victim)
        prg.add_mask(upload, keys.agree(mask_key, adverts[v].mask_public, MASK_PURPOSE, bound), +1)
    return upload


def test_active_clients_refuse_a_threshold_of_two_of_five(session):
    s = session(N, dim=8, active=True)
    assert s.parameters.threshold == 4
    with pytest.raises(ProtocolError, match=r"threshold 2 of a neighbourhood of 5 is below client 0's policy.*2t > m"):
        split_view_attack(s, threshold=2)
    assert all(c.expecting is Setup for c in s.clients)


def test_a_client_with_an_identity_key_refuses_passive_mode(session):
    s = session(N, dim=8, active=True)
    with pytest.raises(ProtocolError, match="requires active mode but the server's Setup asks for passive"):
        s.clients[0].handle(dataclasses.replace(s.requests[0], active=False))
    # A client's own policy can also demand a larger threshold than the protocol's minimum.
    strict = SecAggClient(1, lambda: s.inputs[1], s.identities[1], s.pki, ClientPolicy(active=True, min_fraction=0.8))
    with pytest.raises(ProtocolError, match="policy"):
        strict.handle(s.requests[1])  # t = 4 of 5 is not above 0.8 * 5


def test_clients_shown_different_thresholds_cannot_finish_a_session_together(session):
    s = session(N, dim=8, active=True)
    setups = [dataclasses.replace(r, threshold=5) if r.recipient >= 3 else r for r in s.requests]
    adverts = {m.sender: m for m in (s.clients[r.recipient].handle(r) for r in setups)}
    with pytest.raises(ProtocolAbort, match="client 3's key advertisement is not signed by client 3"):
        s.clients[0].handle(KeyBroadcast(0, adverts))


def test_a_masked_input_from_another_session_is_refused(session):
    old, new = session(N, dim=8), session(N, dim=8)
    for s in (old, new):
        s.step()
        s.step()
    stale = next(m for m in old.deliver() if m.sender == 0)
    replies = new.deliver()
    with pytest.raises(ProtocolError, match="belongs to another session: replayed"):
        new.server.receive(stale)
    new.collect(replies)
    assert np.array_equal(new.finish(), new.expected(range(N)))


def test_in_active_mode_a_replayed_input_with_the_new_session_id_fails_its_signature(session):
    old, new = session(N, dim=8, active=True), session(N, dim=8, active=True)
    new.pki.update(old.pki)  # the same clients, two sessions
    for u in range(N):
        new.clients[u] = SecAggClient(u, lambda u=u: new.inputs[u], old.identities[u], old.pki)
    new.server._pki = dict(old.pki)
    for s in (old, new):
        s.step()
        s.step()
    stale = next(m for m in old.deliver() if m.sender == 0)
    with pytest.raises(ProtocolError, match="masked input has no valid signature"):
        new.server.receive(dataclasses.replace(stale, session=new.server.session))


def forge_share(response, survivor: bool, victim: int):
    field = "self_mask_shares" if survivor else "key_shares"
    shares = dict(getattr(response, field))
    shares[victim] = (shares[victim] + 1 + int.from_bytes(os.urandom(8), "little")) % shamir.PRIME
    return dataclasses.replace(response, **{field: shares})


@pytest.mark.parametrize("survivor", [True, False], ids=["self-mask seed", "mask key"])
def test_a_forged_share_is_found_with_the_spare_shares_and_excluded(session, survivor):
    s = session(6, dim=8)  # t = 4 of 6: two spare shares per secret
    victim = 3
    s.step()
    s.step()
    s.step(skip=set() if survivor else {victim})
    replies = s.deliver()
    replies[0] = forge_share(replies[0], survivor, victim)  # client 0's share comes first
    s.collect(replies)
    survivors = set(range(6)) - (set() if survivor else {victim})
    assert np.array_equal(s.server.result, s.expected(survivors))
    assert s.server.cheaters == {0}


def test_too_many_forged_shares_abort_with_the_reason(session):
    s = session(6, dim=8)
    for _ in range(3):
        s.step()
    replies = s.deliver()
    for i in (0, 1, 2):  # three forged of six, t = 4: no 4 shares are all honest
        replies[i] = forge_share(replies[i], True, 4)
    with pytest.raises(ProtocolAbort, match="client 4's self-mask seed do not rebuild it.*commitment"):
        s.collect(replies)


def test_a_client_sending_garbage_shares_is_excluded_and_the_round_finishes(session):
    s = session(6, dim=8)
    s.step()
    replies = s.deliver()
    cheat = 2
    replies[cheat] = dataclasses.replace(
        replies[cheat], ciphertexts={v: os.urandom(len(c)) for v, c in replies[cheat].ciphertexts.items()}
    )
    s.collect(replies)
    uploads = s.step()
    assert all(m.rejected == {cheat} for m in uploads if m.sender != cheat)
    assert "did not open" in s.server.excluded[cheat]
    assert np.array_equal(s.finish(), s.expected(set(range(6)) - {cheat}))


@pytest.mark.parametrize("bad", ["all-zero key", "copied keys"])
def test_a_bad_public_key_is_refused_at_advertise_keys_and_the_round_finishes(session, bad):
    s = session(6, dim=8)
    replies = s.deliver()
    if bad == "all-zero key":
        with pytest.raises(ProtocolError, match="low order"):
            s.server.receive(dataclasses.replace(replies[5], mask_public=bytes(32)))
        out = {5}  # its reply was refused: it counts as dropped
        replies = replies[:5]
    else:
        replies[5] = dataclasses.replace(replies[5], cipher_public=replies[4].cipher_public,
                                         mask_public=replies[4].mask_public)
        out = {4, 5}  # who copied whom is unknowable: both are left out
    s.collect(replies)
    assert s.server.u1 == set(range(6)) - out
    assert np.array_equal(s.finish(), s.expected(set(range(6)) - out))


def test_a_disconnected_survivor_graph_is_refused(session):
    ring = Graph(tuple(frozenset({(u - 1) % 8, (u + 1) % 8}) for u in range(8)))
    s = session(8, dim=8, neighbors=2, threshold=2, graph=ring)
    s.step()
    s.step()
    with pytest.raises(ProtocolAbort, match="2 disconnected parts"):
        s.step(skip={0, 4})  # {1, 2, 3} and {5, 6, 7}: each part's sum could be unmasked


# SecAgg+ on the circulant C_10(1, 2) (k = 4, m = 5), victim 0 with neighbours 1, 2, 8, 9. Each
# liar h is told that the clients CLAIMS[h] dropped: every neighbour w of the victim is "dropped"
# for t = 3 of its holders, while no client is told more than m - t = 2 clients dropped, so none
# sees too few survivors. No client colludes.
RING = Graph(tuple(frozenset({(u + d) % 10 for d in (-2, -1, 1, 2)}) for u in range(10)))
CLAIMS = {1: {2, 9}, 9: {1, 8}, 2: {1}, 8: {9}, 3: {1, 2}, 7: {8, 9}, 4: {2}, 6: {8}}


def sparse_attack(s) -> np.ndarray:
    """Rebuild the mask keys of all the victim's neighbours, then its self-mask seed, and strip
    every mask off its upload (the review's attack on passive SecAgg+, scaled down)."""
    everyone, victim = frozenset(range(10)), 0
    views = {h: everyone - CLAIMS.get(h, set()) for h in range(10)}
    signatures = {}
    if s.parameters.active:
        for h in range(10):
            signatures[h] = s.clients[h].handle(SurvivorList(h, views[h], 10)).signature
    key_shares = {w: [] for w in RING.neighbors[victim]}
    seed_shares = []
    for h in range(10):
        holders = RING.neighborhood(h)
        shown = {u: sig for u, sig in signatures.items() if u in holders and views[u] == views[h]}
        response = s.clients[h].handle(UnmaskRequest(h, holders & views[h], holders - views[h], shown))
        for w, y in response.key_shares.items():
            key_shares.setdefault(w, []).append((point(h), y))
        if victim in response.self_mask_shares:
            seed_shares.append((point(h), response.self_mask_shares[victim]))
    t, bound = s.parameters.threshold, s.server.bound
    upload = next(m.vector for m in s.server.masked_uploads if m.sender == victim).copy()
    prg.add_mask(upload, shamir.reconstruct(seed_shares, t).to_bytes(32, "little"), -1)
    victim_public = s.server.adverts[victim].mask_public
    for w in RING.neighbors[victim]:  # all larger than the victim: it added +PRG(s_0w)
        key = keys.private_key_from_int(shamir.reconstruct(key_shares[w], t))
        prg.add_mask(upload, keys.agree(key, victim_public, MASK_PURPOSE, bound), -1)
    return upload


def test_passive_secagg_plus_lets_a_lying_server_read_an_input_without_colluders(session):
    s = session(10, dim=16, neighbors=4, active=False, graph=RING)
    assert s.parameters.threshold == 3 and not s.parameters.resists_lying_server
    for _ in range(3):
        s.step()
    assert np.array_equal(sparse_attack(s), s.inputs[0])


def test_the_default_active_mode_stops_that_attack_on_the_same_graph(session):
    s = session(10, dim=16, neighbors=4, graph=RING)
    assert s.parameters.active and s.parameters.threshold == 4
    for _ in range(3):
        s.step()
    with pytest.raises(ProtocolAbort, match="survived; threshold is 4"):
        sparse_attack(s)


def test_sparse_graphs_default_to_active_mode_and_say_what_passive_mode_risks():
    sparse = plan(1000)
    assert sparse.active and not sparse.complete and 2 * sparse.threshold > sparse.neighborhood
    assert sparse.resists_lying_server and "signed" in sparse.describe()
    passive = plan(1000, active=False)
    assert not passive.complete and not passive.resists_lying_server
    assert "lies about dropouts can read single inputs" in passive.describe()
    assert not plan(10).active and plan(10).resists_lying_server  # complete graph: passive is enough
