"""The server of secure aggregation as a state machine (Bonawitz et al., CCS 2017, Fig. 4, "Server").

Each round the server sends requests (:meth:`SecAggServer.start`, :meth:`SecAggServer.close_round`)
and collects one reply per live client with :meth:`SecAggServer.receive`, which rejects a reply
for another round, from a client that was not asked, a second reply from the same client, or one
with wrong lengths, raising :class:`ProtocolError` before touching any state. Closing a round
fixes the set of live clients: U1 (advertised keys), U2 (shared keys), U3 (sent masked inputs),
U4 (signed U3, active mode), U5 (sent shares). Masked inputs are held until round 2 closes and
then summed over U3 (one vector per client during that round; kept after it only when asked).

Unmasking (round 4) removes the masks from z = sum_{u in U3} y_u:

- for each survivor u in U3, reconstruct b_u from t shares and subtract PRG(b_u);
- for each dropped v in U2 \\ U3, reconstruct s_v^SK, recompute s_uv = KA(s_v^SK, s_u^PK) with
  every surviving neighbour u and cancel the pairwise mask u added.

The result is sum_{u in U3} x_u in Z_R. Whenever some client's secrets have fewer than t live
holders the server raises :class:`ProtocolAbort`: the sum could no longer be unmasked.

One misbehaving client cannot abort an honest round: a public key that is malformed, of low
order or another client's is refused at AdvertiseKeys (both holders of a copied key are left
out); a client whose encrypted shares fail to open at a neighbour (checked when they arrive, in
round 2) is excluded from U3; a forged share is caught because every reconstruction is checked
(s_v^SK against s_v^PK, b_v against its commitment) and the spare shares find the consistent
ones. Uploads of round 2 are held until the round closes, so an excluded client's never enters
the sum. A survivor graph that falls apart is refused: the server could unmask each part.
"""

from __future__ import annotations

import itertools
import os
from typing import Callable, Mapping

import numpy as np

from gradleak.defenses.secagg import keys, prg, shamir
from gradleak.defenses.secagg.client import point, share_plaintext_size
from gradleak.defenses.secagg.constants import DIGEST_BYTES, SESSION_BYTES
from gradleak.defenses.secagg.fixedpoint import ring_dtype
from gradleak.defenses.secagg.graph import Graph, SecurityParameters
from gradleak.defenses.secagg.messages import (
    TITLES,
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
    binding,
    mask_purpose,
    seed_commitment,
    survivors_payload,
    upload_payload,
)

MAX_RECONSTRUCTION_TRIES = 256  # t-subsets tried per secret when shares disagree

REPLY = {
    "advertise": AdvertiseKeys,
    "share": ShareKeys,
    "mask": MaskedInput,
    "consistency": ConsistencySignature,
    "unmask": UnmaskResponse,
}


class SecAggServer:
    """The server's side: relays keys and shares, sums masked inputs, unmasks the sum."""

    def __init__(
        self,
        parameters: SecurityParameters,
        graph: Graph,
        dim: int,
        bits: int = 32,
        active: bool = False,
        pki: Mapping[int, bytes] | None = None,
        keep_uploads: bool = False,
    ) -> None:
        if graph.n != parameters.clients:
            raise ProtocolError(f"the graph has {graph.n} clients but the parameters are for {parameters.clients}")
        if active and (pki is None or set(pki) != set(range(graph.n))):
            raise ProtocolError("active mode needs every client's identity key in the PKI")
        self.parameters, self.graph, self.dim, self.bits = parameters, graph, dim, bits
        self.threshold = parameters.threshold
        self.active, self._pki, self.keep_uploads = active, dict(pki or {}), keep_uploads
        self.dtype = ring_dtype(bits)
        self.session = os.urandom(SESSION_BYTES)
        self.bound = binding(self.session, graph.n, self.threshold, graph.digest, dim, bits, active)
        self.phase: str | None = None
        self.asked: frozenset[int] = frozenset()
        self.replies: dict[int, Message] = {}
        self.masked_uploads: list[MaskedInput] = []
        self.pending: dict[int, np.ndarray] = {}
        self.key_owners: dict[bytes, set[int]] = {}
        self.excluded: dict[int, str] = {}  # client -> why it was left out of the sum
        self.cheaters: set[int] = set()  # clients whose unmasking shares were caught forged
        self.total = np.zeros(dim, dtype=self.dtype)
        self.result: np.ndarray | None = None

    # Collecting

    def receive(self, message: Message) -> None:
        """Accept one client's reply for the current round, or raise :class:`ProtocolError`."""
        if self.phase is None:
            raise ProtocolError("the server is not collecting replies; call start() first")
        expected = REPLY[self.phase]
        if type(message) is not expected:
            raise ProtocolError(
                f"the server is collecting {expected.__name__} ({TITLES[self.phase]}) but received "
                f"{type(message).__name__} ({TITLES.get(message.round, message.round)})"
            )
        sender = message.sender
        if sender not in self.asked:
            raise ProtocolError(f"client {sender} was not asked in round {TITLES[self.phase]}: unknown sender")
        if sender in self.replies:
            raise ProtocolError(f"client {sender} already replied in round {TITLES[self.phase]}: duplicate")
        if message.session != self.session:
            raise ProtocolError(f"client {sender}'s {type(message).__name__} belongs to another session: replayed or misrouted")
        self._validators[type(message)](self, message)
        if isinstance(message, MaskedInput):
            self.pending[sender] = message.vector
            if self.keep_uploads:
                self.masked_uploads.append(message)
            message = MaskedInput(sender, np.empty(0, self.dtype), message.rejected)  # the vector is held apart
        self.replies[sender] = message

    def _check_advertise(self, message: AdvertiseKeys) -> None:
        u = message.sender
        if len(message.cipher_public) != keys.PUBLIC_KEY_BYTES or len(message.mask_public) != keys.PUBLIC_KEY_BYTES:
            raise ProtocolError(f"client {u}'s public keys are not {keys.PUBLIC_KEY_BYTES} bytes each")
        if message.cipher_public == message.mask_public:
            raise ProtocolError(f"client {u} advertised the same public key twice")
        if len(message.model_digest) not in (0, DIGEST_BYTES):
            raise ProtocolError(f"client {u}'s model digest is {len(message.model_digest)} bytes, not {DIGEST_BYTES} or none")
        for public in (message.cipher_public, message.mask_public):
            if not keys.usable_public_key(public):
                raise ProtocolError(f"client {u}'s public key {public[:4].hex()}... is of low order (e.g. all zero): refused")
        payload = advert_payload(self.bound, u, message.cipher_public, message.mask_public, message.model_digest)
        if self.active and not keys.verify(self._pki[u], message.signature, payload):
            raise ProtocolError(f"client {u}'s key advertisement has no valid signature")
        for public in (message.cipher_public, message.mask_public):
            self.key_owners.setdefault(public, set()).add(u)

    def _check_share(self, message: ShareKeys) -> None:
        u = message.sender
        expected = self.graph.neighbors[u] & self.u1
        if set(message.ciphertexts) != expected:
            raise ProtocolError(f"client {u} must send one encrypted share to each of its {len(expected)} live neighbours")
        if len(message.commitment) != 32:
            raise ProtocolError(f"client {u}'s commitment to its self-mask seed is not 32 bytes")
        size = keys.sealed_size(share_plaintext_size())
        for v, blob in message.ciphertexts.items():
            if len(blob) != size:
                raise ProtocolError(f"client {u}'s encrypted share for client {v} is {len(blob)} bytes, not {size}")

    def _check_masked(self, message: MaskedInput) -> None:
        vector, u = message.vector, message.sender
        if vector.shape != (self.dim,) or vector.dtype != self.dtype:
            raise ProtocolError(
                f"client {u}'s masked input has shape {vector.shape} and dtype {vector.dtype}; "
                f"expected ({self.dim},) {self.dtype}"
            )
        if not message.rejected <= self.graph.neighbors[u] & self.u2:
            raise ProtocolError(f"client {u} reports bad shares from clients that sent it none")
        if self.active and not keys.verify(self._pki[u], message.signature, upload_payload(self.bound, u, vector)):
            raise ProtocolError(f"client {u}'s masked input has no valid signature")

    def _check_signature(self, message: ConsistencySignature) -> None:
        if not keys.verify(self._pki[message.sender], message.signature, self._survivors_payload):
            raise ProtocolError(f"client {message.sender}'s signature on the survivor list does not verify")

    def _check_unmask(self, message: UnmaskResponse) -> None:
        request = self.requests[message.sender]
        if set(message.self_mask_shares) != request.survivors or set(message.key_shares) != request.dropped:
            raise ProtocolError(f"client {message.sender} did not answer exactly the shares it was asked for")
        values = list(message.self_mask_shares.values()) + list(message.key_shares.values())
        if any(not (isinstance(y, int) and 0 <= y < shamir.PRIME) for y in values):
            raise ProtocolError(f"client {message.sender} sent a share outside the Shamir field")

    _validators = {
        AdvertiseKeys: _check_advertise,
        ShareKeys: _check_share,
        MaskedInput: _check_masked,
        ConsistencySignature: _check_signature,
        UnmaskResponse: _check_unmask,
    }

    # Rounds

    def start(self) -> list[Setup]:
        """Round 0: send every client its neighbours and the session parameters."""
        if self.phase is not None:
            raise ProtocolError("this session has already started")
        return self._open("advertise", range(self.graph.n), lambda u: Setup(
            u, self.session, self.graph.n, self.threshold, self.graph.neighbors[u], self.dim, self.bits, self.active,
            self.graph.digest,
        ))

    def close_round(self) -> list[Message]:
        """End the current round: whoever has not replied has dropped. Returns the next requests."""
        live = frozenset(self.replies)
        phase = self.phase
        if phase == "advertise":
            copied = set().union(*(owners for owners in self.key_owners.values() if len(owners) > 1))
            for u in copied:
                self.excluded[u] = "advertised a public key another client also advertised"
            live -= copied
            self.adverts, self.u1 = {u: self.replies[u] for u in live}, frozenset(live)
            self._require(live, live, "advertising keys")
            return self._open("share", live, lambda u: KeyBroadcast(
                u, {v: self.adverts[v] for v in self.graph.neighborhood(u) & live}
            ))
        if phase == "share":
            self.shares, self.u2 = dict(self.replies), live
            self.commitments = {u: m.commitment for u, m in self.shares.items()}
            self._require(live, live, "sharing keys")
            return self._open("mask", live, lambda u: SharesRelay(
                u, {v: self.shares[v].ciphertexts[u] for v in self.graph.neighbors[u] & live}
            ))
        if phase == "mask":
            self.rejected = {u: m.rejected for u, m in self.replies.items()}
            for u, bad in self.rejected.items():
                for v in bad:
                    self.excluded.setdefault(v, f"its encrypted shares did not open at client {u}")
            live = live - self.excluded.keys()
            for u in sorted(live):  # only now, so an excluded client's upload never enters the sum
                np.add(self.total, self.pending[u], out=self.total)
            self.pending = {}
            self.u3 = live
            self._require(self.u2, live, "masked-input collection")
            if live and self.graph.components(live) > 1:
                raise ProtocolAbort(
                    f"the surviving clients' graph has {self.graph.components(live)} disconnected parts: the server "
                    "could unmask each part's sum, not only the total, so the round is aborted (use more neighbours)"
                )
            if self.active:
                self._survivors_payload = survivors_payload(self.bound, live, self.graph.n)
                return self._open("consistency", live, lambda u: SurvivorList(u, live, self.graph.n))
            return self._open_unmask(live, {})
        if phase == "consistency":
            signatures = {u: m.signature for u, m in self.replies.items()}
            self._require(self.u2, live, "the consistency check")
            return self._open_unmask(live, signatures)
        if phase == "unmask":
            self._require(self.u2, live, "unmasking")
            self._unmask(self.replies)
            self.phase = "done"
            return []
        raise ProtocolError(f"there is no round to close (phase {phase})")

    def _open(self, phase: str, recipients, make) -> list[Message]:
        self.phase, self.asked, self.replies = phase, frozenset(recipients), {}
        return [make(u) for u in sorted(self.asked)]

    def _open_unmask(self, live: frozenset[int], signatures: Mapping[int, bytes]) -> list[UnmaskRequest]:
        def request(u: int) -> UnmaskRequest:
            holders = (self.graph.neighborhood(u) & self.u2) - self.rejected[u]
            local = {v: signatures[v] for v in self.graph.neighborhood(u) & signatures.keys()}
            return UnmaskRequest(u, holders & self.u3, holders - self.u3, local)

        requests = self._open("unmask", live, request)
        self.requests = {m.recipient: m for m in requests}
        return requests

    def _require(self, owners: frozenset[int], live: frozenset[int], stage: str) -> None:
        """Abort unless every client in ``owners`` has at least t live neighbourhood members."""
        for u in sorted(owners):
            alive = len(self.graph.neighborhood(u) & live)
            if alive < self.threshold:
                raise ProtocolAbort(
                    f"after {stage}, only {alive} clients holding client {u}'s secrets are still live, fewer "
                    f"than the threshold {self.threshold}: the sum cannot be unmasked, so the round is aborted "
                    f"(lower the threshold or add neighbours to tolerate more dropouts)"
                )

    def _unmask(self, responses: Mapping[int, UnmaskResponse]) -> None:
        total = self.total
        for v in sorted(self.u2):
            survived = v in self.u3
            holders = [w for w in sorted(self.graph.neighborhood(v) & responses.keys()) if v not in self.rejected[w]]
            shares = [
                (w, (responses[w].self_mask_shares if survived else responses[w].key_shares)[v]) for w in holders
            ]
            if survived:
                seed = self._recover(v, shares, lambda s: self._seed_matches(v, s), "self-mask seed")
                prg.add_mask(total, seed.to_bytes(prg.SEED_BYTES, "little"), -1)
                continue
            # Neighbours that masked with v: survivors that held v's valid shares.
            maskers = sorted(u for u in self.graph.neighbors[v] & self.u3 if v not in self.rejected[u])
            if not maskers:
                continue
            secret = self._recover(v, shares, lambda s: self._key_matches(v, s), "mask key")
            private = keys.private_key_from_int(secret)
            for u in maskers:
                advert = self.adverts[u]  # u's seed mixed in the model digest u committed to
                seed = keys.agree(private, advert.mask_public, mask_purpose(advert.model_digest), self.bound)
                # u added +PRG(s_uv) when v > u and -PRG(s_uv) when v < u; cancel it.
                prg.add_mask(total, seed, -1 if v > u else +1)
        if self.bits < 8 * self.dtype.itemsize:
            total &= self.dtype.type((1 << self.bits) - 1)
        self.result = total

    def _seed_matches(self, v: int, secret: int) -> bool:
        fits = secret < 1 << (8 * prg.SEED_BYTES)
        return fits and seed_commitment(self.bound, v, secret.to_bytes(prg.SEED_BYTES, "little")) == self.commitments[v]

    def _key_matches(self, v: int, secret: int) -> bool:
        fits = secret < 1 << (8 * keys.PRIVATE_KEY_BYTES)
        return fits and keys.public_bytes(keys.private_key_from_int(secret)) == self.adverts[v].mask_public

    def _recover(self, v: int, shares: list[tuple[int, int]], valid: Callable[[int], bool], what: str) -> int:
        """Client v's secret from its holders' shares (holder, y), checked by ``valid``. When the
        first t disagree with the check, t-subsets of all shares are tried until one passes; the
        holders whose shares lie off that polynomial are recorded in :attr:`cheaters`."""
        t = self.threshold
        if len(shares) < t:
            raise ProtocolAbort(f"only {len(shares)} valid shares of client {v}'s {what}, fewer than the threshold {t}")
        points = [(point(w), y) for w, y in shares]
        secret = shamir.reconstruct(points, t)
        if valid(secret):
            return secret
        for tries, subset in enumerate(itertools.combinations(points, t)):
            if tries == MAX_RECONSTRUCTION_TRIES:
                break
            secret = shamir.reconstruct(list(subset), t)
            if valid(secret):
                self.cheaters |= {w for (w, _), (x, y) in zip(shares, points) if shamir.evaluate(list(subset), x) != y}
                return secret
        raise ProtocolAbort(
            f"the shares of client {v}'s {what} do not rebuild it (checked against its "
            f"{'commitment' if what == 'self-mask seed' else 'advertised public key'}) from any {t} of "
            f"{len(shares)}: too many forged shares"
        )

    @property
    def survivors(self) -> frozenset[int]:
        """U3: the clients whose inputs are in the sum."""
        return self.u3
