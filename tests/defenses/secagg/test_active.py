"""A server that lies about who dropped: what it gains in passive mode, and how active mode stops it.

The attack (Bonawitz et al. 2017, Sec. 4 and 6): tell some clients that v dropped (they reveal
their shares of s_v^SK) and others that v survived (they reveal their shares of b_v); with t
shares of each the server strips every mask off v's upload and reads x_v.
"""

import dataclasses

import numpy as np
import pytest

from gradleak.defenses.secagg import keys, prg, shamir
from gradleak.defenses.secagg.client import point
from gradleak.defenses.secagg.constants import MASK_PURPOSE
from gradleak.defenses.secagg.messages import KeyBroadcast, ProtocolAbort, SurvivorList, UnmaskRequest

N, VICTIM = 8, 7
GROUP_A = {0, 1, 2, 3}  # told that the victim dropped


def lying_requests(requests):
    """The honest unmasking requests, except that group A is told the victim dropped."""
    return [
        dataclasses.replace(r, survivors=r.survivors - {VICTIM}, dropped=r.dropped | {VICTIM})
        if r.recipient in GROUP_A else r
        for r in requests
    ]


def test_passive_mode_with_a_threshold_of_half_lets_a_lying_server_read_one_input(session):
    s = session(N, dim=32, threshold=4)  # t = m / 2: allowed in passive mode, refused in active mode
    for _ in range(3):
        s.step()
    responses = [s.clients[r.recipient].handle(r) for r in lying_requests(s.requests)]
    key_shares = [(point(m.sender), m.key_shares[VICTIM]) for m in responses if VICTIM in m.key_shares]
    seed_shares = [(point(m.sender), m.self_mask_shares[VICTIM]) for m in responses if VICTIM in m.self_mask_shares]
    mask_key = keys.private_key_from_int(shamir.reconstruct(key_shares, 4))
    seed = shamir.reconstruct(seed_shares, 4).to_bytes(32, "little")

    upload = next(m.vector for m in s.server.masked_uploads if m.sender == VICTIM).copy()
    prg.add_mask(upload, seed, -1)
    for v in range(N - 1):  # every other client has a smaller id, so the victim subtracted PRG(s_v,victim)
        pairwise = keys.agree(mask_key, s.server.adverts[v].mask_public, MASK_PURPOSE, s.server.bound)
        prg.add_mask(upload, pairwise, +1)
    assert np.array_equal(upload, s.inputs[VICTIM])


def active_session_after_masking(session):
    s = session(N, dim=32, active=True)
    assert s.parameters.threshold == 6
    for _ in range(3):
        s.step()
    assert all(isinstance(r, SurvivorList) for r in s.requests)
    return s


def test_active_mode_completes_with_the_exact_sum(session):
    s = session(N, dim=32, active=True)
    s.step()
    s.step()
    s.step(skip={VICTIM})
    assert np.array_equal(s.finish(), s.expected(range(N - 1)))


def test_active_mode_catches_a_request_that_contradicts_the_signed_survivor_list(session):
    s = active_session_after_masking(session)
    s.step()  # everyone signs the true U3, which contains the victim
    for request in lying_requests(s.requests):
        if request.recipient in GROUP_A:
            with pytest.raises(ProtocolAbort, match="other than the one it signed"):
                s.clients[request.recipient].handle(request)


@pytest.mark.parametrize("forward", ["own group's signatures", "all signatures"])
def test_active_mode_catches_different_survivor_lists_for_different_clients(session, forward):
    s = active_session_after_masking(session)
    everyone = frozenset(range(N))
    views = {u: everyone - {VICTIM} if u in GROUP_A else everyone for u in range(N)}
    signatures = {r.recipient: s.clients[r.recipient].handle(SurvivorList(r.recipient, views[r.recipient], N)).signature
                  for r in s.requests}
    for u in GROUP_A:
        shown = {v: sig for v, sig in signatures.items() if forward == "all signatures" or v in GROUP_A}
        request = UnmaskRequest(u, views[u], frozenset({VICTIM}), shown)
        with pytest.raises(ProtocolAbort, match="survivor list"):
            s.clients[u].handle(request)


def test_active_mode_catches_a_substituted_public_key(session):
    s = session(N, dim=8, active=True)
    s.step()
    broadcast = s.requests[0]
    impostor = keys.KeyPair.generate()  # the server's own key, to read client 1's shares
    forged = dataclasses.replace(broadcast.keys[1], cipher_public=impostor.public)
    with pytest.raises(ProtocolAbort, match="not signed by client 1"):
        s.clients[0].handle(KeyBroadcast(0, {**broadcast.keys, 1: forged}))
