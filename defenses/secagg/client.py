"""A client of secure aggregation as a state machine (Bonawitz et al., CCS 2017, Fig. 4, "User").

The client answers one server message per round and expects them in order:
Setup -> KeyBroadcast -> SharesRelay -> [SurvivorList] -> UnmaskRequest. Each handler checks the
whole message first and only then changes state, so a rejected message (:class:`ProtocolError`)
leaves the client exactly as it was. The client's input is asked for only when it masks it
(round 2), already encoded in Z_R by :mod:`~gradleak.defenses.secagg.fixedpoint`.

Secrets: c_u (X25519, encrypts shares), s_u (X25519, pairwise masks) and the self-mask seed b_u
(32 bytes from ``os.urandom``). s_u^SK and b_u are Shamir-shared t-of-m over the client's
neighbourhood; for any other client v the client later reveals either its share of b_v (v
survived) or of s_v^SK (v dropped), never both.

The server is not trusted with the parameters: the client's own :class:`ClientPolicy` fixes the
mode and the lowest threshold it accepts, and everything the Setup fixes (session, cohort, graph
digest, threshold, shape, mode) is hashed into the session binding that salts every key, is the
associated data of every encrypted share and is signed in active mode. The model the client
trained is bound too (``model_digest``): clients that received different models cannot finish.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gradleak.defenses.secagg import keys, prg, shamir
from gradleak.defenses.secagg.constants import DIGEST_BYTES, ID_BYTES, SESSION_BYTES, SHARE_PURPOSE
from gradleak.defenses.secagg.fixedpoint import ring_dtype
from gradleak.defenses.secagg.messages import (
    AdvertiseKeys,
    ConsistencySignature,
    KeyBroadcast,
    MaskedInput,
    Message,
    ProtocolAbort,
    ProtocolError,
    SharesRelay,
    ShareKeys,
    Setup,
    SurvivorList,
    UnmaskRequest,
    UnmaskResponse,
    advert_payload,
    mask_purpose,
    seed_commitment,
    survivors_payload,
    upload_payload,
)


def share_plaintext_size() -> int:
    return 2 * ID_BYTES + 2 * shamir.share_size()


def share_associated_data(bound: bytes, sender: int, recipient: int) -> bytes:
    return bound + sender.to_bytes(ID_BYTES, "little") + recipient.to_bytes(ID_BYTES, "little")


def point(client: int) -> int:
    """Client v's Shamir evaluation point x_v = v + 1 (nonzero)."""
    return client + 1


@dataclass(frozen=True)
class ClientPolicy:
    """What a client requires of the server's Setup, whatever the server asks for.

    In active mode 2t > m is always required (Bonawitz et al. 2017, Sec. 6): with t <= m/2 a
    server shows two halves of a neighbourhood different survivor lists, each half signs its own,
    and the server collects t shares of both secrets of a victim.
    """

    active: bool = False  # the mode required: a Setup for the other mode is refused
    min_fraction: float = 0.0  # t must exceed this fraction of the neighbourhood m (at least 1/2 in active mode)
    min_threshold: int = 2  # and be at least this


def read_share(plaintext: bytes) -> tuple[int, int, int, int]:
    """(sender, recipient, share of s^SK, share of b) from a decrypted share pair."""
    width = shamir.share_size()
    sender = int.from_bytes(plaintext[:ID_BYTES], "little")
    recipient = int.from_bytes(plaintext[ID_BYTES : 2 * ID_BYTES], "little")
    key_share = int.from_bytes(plaintext[2 * ID_BYTES : 2 * ID_BYTES + width], "little")
    return sender, recipient, key_share, int.from_bytes(plaintext[2 * ID_BYTES + width :], "little")


class SecAggClient:
    """One client's side of the protocol. ``encoded_input()`` returns its vector in Z_R.

    ``model_digest`` (32 bytes, or empty to not bind) is the SHA-256 of the model the client
    received this round. The client commits to it in AdvertiseKeys (signed in active mode),
    aborts on the key broadcast unless every neighbour committed to the same digest, and mixes
    it into its pairwise mask seeds, so clients of one session must have trained one model.
    """

    def __init__(
        self,
        client_id: int,
        encoded_input: Callable[[], np.ndarray],
        identity: Ed25519PrivateKey | None = None,
        pki: Mapping[int, bytes] | None = None,
        policy: ClientPolicy | None = None,
        model_digest: bytes = b"",
    ) -> None:
        if len(model_digest) not in (0, DIGEST_BYTES):
            raise ProtocolError(f"a model digest is {DIGEST_BYTES} bytes (SHA-256) or empty, not {len(model_digest)}")
        self.id = client_id
        self.model_digest = model_digest
        self._encoded_input = encoded_input
        self._identity = identity
        self._pki = dict(pki or {})
        # A client that holds an identity key requires active mode unless told otherwise.
        self.policy = policy or ClientPolicy(active=identity is not None)
        self.expecting: type[Message] | None = Setup

    def handle(self, message: Message) -> Message:
        """Process the server's message for the current round and return the reply."""
        if getattr(message, "recipient", None) != self.id:
            raise ProtocolError(f"client {self.id} received a message addressed to {getattr(message, 'recipient', '?')}")
        if self.expecting is None:
            raise ProtocolError(f"client {self.id} has finished this session; start a new one")
        if type(message) is not self.expecting:
            raise ProtocolError(
                f"client {self.id} expected {self.expecting.__name__} (round {self.expecting.round}) "
                f"but received {type(message).__name__} (round {message.round})"
            )
        return self._handlers[type(message)](self, message)

    # Round 0: AdvertiseKeys

    def _on_setup(self, message: Setup) -> AdvertiseKeys:
        neighbors = frozenset(message.neighbors)
        if len(message.session) != SESSION_BYTES:
            raise ProtocolError(f"the session id must be {SESSION_BYTES} bytes, not {len(message.session)}")
        if self.id in neighbors or any(not 0 <= v < message.cohort for v in neighbors):
            raise ProtocolError(f"client {self.id} received an invalid neighbour list")
        if not 2 <= message.threshold <= len(neighbors) + 1:
            raise ProtocolError(f"threshold {message.threshold} is impossible with {len(neighbors)} neighbours")
        if message.dim < 1 or not 1 <= message.bits <= 64:
            raise ProtocolError(f"invalid vector length {message.dim} or ring size 2^{message.bits}")
        self._check_policy(message, len(neighbors) + 1)
        if message.active and (self._identity is None or any(v not in self._pki for v in neighbors)):
            raise ProtocolError(f"client {self.id} needs an identity key and its neighbours' in the PKI for active mode")
        if len(message.graph) != 32:
            raise ProtocolError(f"the graph digest must be 32 bytes, not {len(message.graph)}")
        cipher, mask = keys.KeyPair.generate(), keys.KeyPair.generate()
        bound = message.bound
        signature = b""
        if message.active:
            payload = advert_payload(bound, self.id, cipher.public, mask.public, self.model_digest)
            signature = keys.sign(self._identity, payload)
        self.setup, self.bound, self.cipher, self.mask = message, bound, cipher, mask
        self.expecting = KeyBroadcast
        return AdvertiseKeys(self.id, cipher.public, mask.public, signature, message.session, self.model_digest)

    def _check_policy(self, message: Setup, m: int) -> None:
        """Refuse a mode or threshold the client's own policy forbids (the server's word is not enough)."""
        policy, t = self.policy, message.threshold
        if message.active != policy.active:
            wanted, got = ("active", "passive") if policy.active else ("passive", "active")
            raise ProtocolError(f"client {self.id} requires {wanted} mode but the server's Setup asks for {got}")
        fraction = max(policy.min_fraction, 0.5) if policy.active else policy.min_fraction
        if t < policy.min_threshold or t <= fraction * m:
            raise ProtocolError(
                f"threshold {t} of a neighbourhood of {m} is below client {self.id}'s policy (t >= "
                f"{policy.min_threshold} and t > {fraction:g} m{', i.e. 2t > m in active mode' if policy.active else ''})"
            )

    # Round 1: ShareKeys

    def _on_key_broadcast(self, message: KeyBroadcast) -> ShareKeys:
        setup = self.setup
        advertised = dict(message.keys)
        own = advertised.get(self.id)
        mine = (self.cipher.public, self.mask.public, self.model_digest)
        if own is None or (own.cipher_public, own.mask_public, own.model_digest) != mine:
            raise ProtocolError(f"client {self.id}'s own keys or model digest are missing or altered in the key broadcast")
        if not set(advertised) <= setup.neighbors | {self.id}:
            raise ProtocolError(f"client {self.id} received keys of clients that are not its neighbours")
        if len(advertised) < setup.threshold:
            raise ProtocolAbort(
                f"client {self.id} has {len(advertised)} live neighbours (itself included), fewer than "
                f"the threshold {setup.threshold}"
            )
        publics = []
        for v, advert in advertised.items():
            if advert.sender != v:
                raise ProtocolError(f"the keys listed under client {v} were advertised by client {advert.sender}")
            if len(advert.cipher_public) != keys.PUBLIC_KEY_BYTES or len(advert.mask_public) != keys.PUBLIC_KEY_BYTES:
                raise ProtocolError(f"client {v}'s public keys are not {keys.PUBLIC_KEY_BYTES} bytes")
            publics += [advert.cipher_public, advert.mask_public]
            payload = advert_payload(self.bound, v, advert.cipher_public, advert.mask_public, advert.model_digest)
            if setup.active and not keys.verify(self._pki[v], advert.signature, payload):
                raise ProtocolAbort(f"client {v}'s key advertisement is not signed by client {v}: the server is lying")
        if len(set(publics)) != len(publics):
            raise ProtocolError("two advertised public keys are identical")
        if self.model_digest:
            # Before any secret is shared: a server that sent two models learns nothing from this session.
            differing = sorted(v for v, advert in advertised.items() if advert.model_digest != self.model_digest)
            if differing:
                raise ProtocolAbort(
                    f"clients received different models: the server is inconsistent (client {self.id}'s model "
                    f"digest differs from that of client(s) {differing})"
                )

        self_mask_seed = os.urandom(prg.SEED_BYTES)
        holders = sorted(advertised)
        key_shares, seed_shares = shamir.split(
            [self.mask.secret_int(), int.from_bytes(self_mask_seed, "little")],
            setup.threshold,
            [point(v) for v in holders],
        )
        width = shamir.share_size()
        cipher_keys: dict[int, bytes] = {}
        ciphertexts: dict[int, bytes] = {}
        for v, key_share, seed_share in zip(holders, key_shares, seed_shares):
            if v == self.id:
                own_shares = (key_share, seed_share)
                continue
            cipher_keys[v] = keys.agree(self.cipher.private, advertised[v].cipher_public, SHARE_PURPOSE, self.bound)
            plaintext = (
                self.id.to_bytes(ID_BYTES, "little")
                + v.to_bytes(ID_BYTES, "little")
                + key_share.to_bytes(width, "little")
                + seed_share.to_bytes(width, "little")
            )
            ciphertexts[v] = keys.seal(cipher_keys[v], plaintext, share_associated_data(self.bound, self.id, v))
        self.peers, self.self_mask_seed, self.own_shares, self.cipher_keys = advertised, self_mask_seed, own_shares, cipher_keys
        self.expecting = SharesRelay
        commitment = seed_commitment(self.bound, self.id, self_mask_seed)
        return ShareKeys(self.id, ciphertexts, commitment, setup.session)

    # Round 2: MaskedInputCollection

    def _on_shares_relay(self, message: SharesRelay) -> MaskedInput:
        setup = self.setup
        received = dict(message.ciphertexts)
        if not set(received) <= set(self.peers) - {self.id}:
            raise ProtocolError(f"client {self.id} received shares from clients it did not exchange keys with")
        if len(received) + 1 < setup.threshold:
            raise ProtocolAbort(
                f"client {self.id} received shares from {len(received)} neighbours; with itself that is "
                f"fewer than the threshold {setup.threshold}"
            )
        expected = keys.sealed_size(share_plaintext_size())
        for v, blob in received.items():
            if len(blob) != expected:
                raise ProtocolError(f"the encrypted share from client {v} is {len(blob)} bytes, not {expected}")
        x = self._encoded_input()
        dtype = ring_dtype(setup.bits)
        if x.shape != (setup.dim,) or x.dtype != dtype:
            raise ProtocolError(
                f"client {self.id}'s encoded input has shape {x.shape} and dtype {x.dtype}; "
                f"the session needs ({setup.dim},) {dtype}"
            )
        held = self._open_shares(received)
        rejected = frozenset(received) - held.keys()
        if len(held) + 1 < setup.threshold:
            raise ProtocolAbort(
                f"client {self.id} holds valid shares from {len(held)} neighbours (clients {sorted(rejected)} sent "
                f"shares that do not open); with itself that is fewer than the threshold {setup.threshold}"
            )
        y = np.array(x, dtype=dtype, copy=True)
        prg.add_mask(y, self.self_mask_seed, +1)
        for v in held:  # not with a client whose shares failed: the server excludes it
            seed = keys.agree(self.mask.private, self.peers[v].mask_public, mask_purpose(self.model_digest), self.bound)
            prg.add_mask(y, seed, +1 if v > self.id else -1)
        if setup.bits < 8 * dtype.itemsize:
            y &= dtype.type((1 << setup.bits) - 1)
        self.held = held
        self.expecting = SurvivorList if setup.active else UnmaskRequest
        signature = keys.sign(self._identity, upload_payload(self.bound, self.id, y)) if setup.active else b""
        return MaskedInput(self.id, y, rejected, signature, setup.session)

    def _open_shares(self, received: Mapping[int, bytes]) -> dict[int, tuple[int, int]]:
        """Decrypt every share pair now, so a sender of garbage is caught before masking, not at
        unmasking; returns (share of s_v^SK, share of b_v) for each v whose pair opened."""
        held: dict[int, tuple[int, int]] = {}
        for v, blob in received.items():
            try:
                plaintext = keys.open_sealed(self.cipher_keys[v], blob, share_associated_data(self.bound, v, self.id))
            except ProtocolError:
                continue
            sender, recipient, key_share, seed_share = read_share(plaintext)
            if (sender, recipient) == (v, self.id) and key_share < shamir.PRIME and seed_share < shamir.PRIME:
                held[v] = (key_share, seed_share)
        return held

    @property
    def share_holders(self) -> frozenset[int]:
        """U2 as this client sees it: the clients whose valid shares it holds, itself included."""
        return frozenset(self.held) | {self.id}

    # Round 3: ConsistencyCheck (active mode)

    def _on_survivor_list(self, message: SurvivorList) -> ConsistencySignature:
        setup = self.setup
        survivors = frozenset(message.survivors)
        if self.id not in survivors or message.cohort != setup.cohort:
            raise ProtocolError(f"the survivor list sent to client {self.id} does not include it")
        local = survivors & (setup.neighbors | {self.id})
        if not local <= self.share_holders:
            raise ProtocolError("the survivor list names neighbours that never shared keys")
        if len(local) < setup.threshold:
            raise ProtocolAbort(f"only {len(local)} of client {self.id}'s neighbourhood survived; threshold is {setup.threshold}")
        signature = keys.sign(self._identity, survivors_payload(self.bound, survivors, setup.cohort))
        self.survivors = survivors
        self.expecting = UnmaskRequest
        return ConsistencySignature(self.id, signature, setup.session)

    # Round 4: Unmasking

    def _on_unmask_request(self, message: UnmaskRequest) -> UnmaskResponse:
        setup = self.setup
        survivors, dropped = frozenset(message.survivors), frozenset(message.dropped)
        if survivors & dropped:
            raise ProtocolAbort(
                f"the server asked client {self.id} to reveal both secrets of clients {sorted(survivors & dropped)}"
            )
        if survivors | dropped != self.share_holders or self.id not in survivors:
            raise ProtocolError(
                f"the unmasking request must split the {len(self.share_holders)} clients whose shares client "
                f"{self.id} holds into survivors (itself included) and dropped"
            )
        if len(survivors) < setup.threshold:
            raise ProtocolAbort(f"only {len(survivors)} survivors around client {self.id}; threshold is {setup.threshold}")
        if setup.active:
            self._check_consistency(survivors, message.signatures)
        key_shares: dict[int, int] = {}
        seed_shares: dict[int, int] = {}
        for v in survivors | dropped:
            key_share, seed_share = self.own_shares if v == self.id else self.held[v]
            if v in survivors:
                seed_shares[v] = seed_share
            else:
                key_shares[v] = key_share
        self.expecting = None
        return UnmaskResponse(self.id, seed_shares, key_shares, setup.session)

    def _check_consistency(self, survivors: frozenset[int], signatures: Mapping[int, bytes]) -> None:
        """Active mode: the request must match the survivor list every signer signed (Bonawitz Fig. 4, round 4)."""
        setup = self.setup
        if survivors != self.survivors & self.share_holders:
            raise ProtocolAbort(f"the server told client {self.id} a survivor set other than the one it signed")
        payload = survivors_payload(self.bound, self.survivors, setup.cohort)
        neighborhood = setup.neighbors | {self.id}
        for v, signature in signatures.items():
            if v not in neighborhood or not keys.verify(self._pki[v], signature, payload):
                raise ProtocolAbort(
                    f"client {v}'s signature does not match the survivor list client {self.id} received: "
                    "the server sent different clients different lists"
                )
        if len(signatures) < setup.threshold:
            raise ProtocolAbort(
                f"client {self.id} saw {len(signatures)} signatures on the survivor list, fewer than the threshold"
            )

    _handlers: dict[type, Callable] = {
        Setup: _on_setup,
        KeyBroadcast: _on_key_broadcast,
        SharesRelay: _on_shares_relay,
        SurvivorList: _on_survivor_list,
        UnmaskRequest: _on_unmask_request,
    }
