"""Malformed messages are rejected with a clear error, and the party that rejects them is unchanged:
the session then completes with the exact sum."""

import dataclasses

import numpy as np
import pytest

from gradleak.defenses.secagg.messages import (
    AdvertiseKeys,
    KeyBroadcast,
    MaskedInput,
    ProtocolAbort,
    ProtocolError,
    SharesRelay,
    ShareKeys,
    Setup,
    UnmaskRequest,
    UnmaskResponse,
)

N = 6


def forge(message, **changes):
    return dataclasses.replace(message, **changes)


def at_round(session, index):
    """A 6-client session advanced to round ``index`` (0 = AdvertiseKeys), with that round's replies."""
    s = session(N, dim=8)
    for _ in range(index):
        s.step()
    return s, s.deliver()


def reject_then_finish(s, replies, bad, match):
    before = dict(s.server.replies)
    with pytest.raises(ProtocolError, match=match):
        s.server.receive(bad)
    assert s.server.replies == before
    s.collect(replies)
    assert np.array_equal(s.finish(), s.expected(range(N)))


# Server side


def test_server_rejects_a_message_for_another_round(session):
    s, replies = at_round(session, 0)
    reject_then_finish(s, replies, ShareKeys(0, {}), "collecting AdvertiseKeys")


def test_server_rejects_an_unknown_sender(session):
    s, replies = at_round(session, 0)
    reject_then_finish(s, replies, forge(replies[0], sender=99), "unknown sender")


def test_server_rejects_a_sender_that_already_dropped(session):
    s = session(N, dim=8, threshold=3)
    s.step(skip={5})  # client 5 never advertised keys
    replies = s.deliver()
    with pytest.raises(ProtocolError, match="unknown sender"):
        s.server.receive(ShareKeys(5, {}))
    s.collect(replies)
    assert np.array_equal(s.finish(), s.expected(range(5)))


def test_server_rejects_a_duplicate(session):
    s, replies = at_round(session, 0)
    s.server.receive(replies[0])
    with pytest.raises(ProtocolError, match="duplicate"):
        s.server.receive(replies[0])
    s.collect(replies[1:])
    assert np.array_equal(s.finish(), s.expected(range(N)))


def test_server_rejects_a_short_public_key(session):
    s, replies = at_round(session, 0)
    reject_then_finish(s, replies, forge(replies[1], mask_public=replies[1].mask_public[:31]), "32 bytes")


def test_server_rejects_a_truncated_ciphertext(session):
    s, replies = at_round(session, 1)
    v, blob = next(iter(replies[0].ciphertexts.items()))
    bad = forge(replies[0], ciphertexts={**replies[0].ciphertexts, v: blob[:-1]})
    reject_then_finish(s, replies, bad, "bytes, not")


def test_server_rejects_shares_missing_a_neighbour(session):
    s, replies = at_round(session, 1)
    v = next(iter(replies[0].ciphertexts))
    bad = forge(replies[0], ciphertexts={w: c for w, c in replies[0].ciphertexts.items() if w != v})
    reject_then_finish(s, replies, bad, "one encrypted share to each")


@pytest.mark.parametrize("vector", [np.zeros(7, np.uint32), np.zeros(8, np.uint64), np.zeros((2, 4), np.uint32)])
def test_server_rejects_a_masked_input_of_the_wrong_length_or_type(session, vector):
    s, replies = at_round(session, 2)
    reject_then_finish(s, replies, forge(replies[0], vector=vector), "masked input has shape")


def test_server_rejects_unmasking_shares_it_did_not_ask_for(session):
    s, replies = at_round(session, 3)
    response = replies[0]
    missing = forge(response, self_mask_shares=dict(list(response.self_mask_shares.items())[1:]))
    reject_then_finish(s, replies, missing, "exactly the shares")


def test_server_rejects_a_share_outside_the_field(session):
    s, replies = at_round(session, 3)
    response = replies[0]
    v = next(iter(response.self_mask_shares))
    bad = forge(response, self_mask_shares={**response.self_mask_shares, v: -1})
    reject_then_finish(s, replies, bad, "outside the Shamir field")


# Client side


def test_client_rejects_a_message_for_another_round(session):
    s = session(N, dim=8)
    client, setup = s.clients[0], s.requests[0]
    with pytest.raises(ProtocolError, match="expected Setup"):
        client.handle(SharesRelay(0, {}))
    assert isinstance(client.handle(setup), AdvertiseKeys)


def test_client_rejects_a_message_for_someone_else(session):
    s = session(N, dim=8)
    with pytest.raises(ProtocolError, match="addressed to 1"):
        s.clients[0].handle(s.requests[1])
    assert s.clients[0].expecting is Setup


def test_client_rejects_a_bad_setup(session):
    s = session(N, dim=8)
    setup = s.requests[0]
    for bad, match in [(forge(setup, session=b"short"), "session id"), (forge(setup, threshold=N + 1), "impossible"),
                       (forge(setup, neighbors=setup.neighbors | {0}), "neighbour list")]:
        with pytest.raises(ProtocolError, match=match):
            s.clients[0].handle(bad)
    assert s.clients[0].expecting is Setup


def client_at_key_broadcast(session):
    s = session(N, dim=8)
    s.step()
    return s, s.clients[0], s.requests[0]


def test_client_rejects_altered_own_keys(session):
    s, client, broadcast = client_at_key_broadcast(session)
    own = broadcast.keys[0]
    bad = KeyBroadcast(0, {**broadcast.keys, 0: forge(own, mask_public=broadcast.keys[1].mask_public)})
    with pytest.raises(ProtocolError, match="own keys"):
        client.handle(bad)
    assert client.expecting is KeyBroadcast
    assert isinstance(client.handle(broadcast), ShareKeys)


def test_client_rejects_duplicate_public_keys_and_mislabelled_senders(session):
    s, client, broadcast = client_at_key_broadcast(session)
    copied = forge(broadcast.keys[2], sender=1)
    with pytest.raises(ProtocolError, match="advertised by client 2"):
        client.handle(KeyBroadcast(0, {**broadcast.keys, 1: broadcast.keys[2]}))
    with pytest.raises(ProtocolError, match="identical"):
        client.handle(KeyBroadcast(0, {**broadcast.keys, 1: copied}))
    assert isinstance(client.handle(broadcast), ShareKeys)


def client_at_relay(session):
    s = session(N, dim=8)
    s.step()
    s.step()
    return s, s.clients[0], s.requests[0]


def test_client_rejects_a_relay_of_the_wrong_length_or_from_strangers(session):
    s, client, relay = client_at_relay(session)
    v, blob = next(iter(relay.ciphertexts.items()))
    with pytest.raises(ProtocolError, match="bytes, not"):
        client.handle(SharesRelay(0, {**relay.ciphertexts, v: blob + b"x"}))
    with pytest.raises(ProtocolError, match="did not exchange keys"):
        client.handle(SharesRelay(0, {**relay.ciphertexts, 42: blob}))
    assert isinstance(client.handle(relay), MaskedInput)


def test_a_tampered_share_is_caught_on_arrival_and_its_sender_left_out(session):
    s, client, relay = client_at_relay(session)
    v, blob = next(iter(relay.ciphertexts.items()))
    s.requests[0] = SharesRelay(0, {**relay.ciphertexts, v: blob[:-1] + bytes([blob[-1] ^ 1])})
    replies = s.deliver()
    assert replies[0].rejected == {v}  # reported with the masked input, before anything is unmasked
    s.collect(replies)
    assert s.server.survivors == set(range(N)) - {v} and "did not open at client 0" in s.server.excluded[v]
    assert np.array_equal(s.finish(), s.expected(set(range(N)) - {v}))


def test_a_client_never_reveals_both_secrets_of_one_client(session):
    s = session(N, dim=8)
    for _ in range(3):
        s.step()
    request = next(r for r in s.requests if r.recipient == 0)
    greedy = forge(request, dropped=frozenset({3}))  # 3 is also listed as a survivor
    with pytest.raises(ProtocolAbort, match="both secrets"):
        s.clients[0].handle(greedy)
    partial = forge(request, survivors=request.survivors - {3})
    with pytest.raises(ProtocolError, match="split"):
        s.clients[0].handle(partial)
    assert isinstance(s.clients[0].handle(request), UnmaskResponse)


def test_a_finished_client_takes_no_more_messages(session):
    s = session(N, dim=8)
    for _ in range(3):
        s.step()
    request = next(r for r in s.requests if r.recipient == 0)
    s.clients[0].handle(request)
    with pytest.raises(ProtocolError, match="finished"):
        s.clients[0].handle(request)
    assert isinstance(request, UnmaskRequest)
