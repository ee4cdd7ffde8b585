"""The messages of the secure-aggregation protocol, with their size on the wire.

Rounds follow Bonawitz et al. (CCS 2017, Fig. 4): 0 AdvertiseKeys, 1 ShareKeys,
2 MaskedInputCollection, 3 ConsistencyCheck (active-adversary mode only), 4 Unmasking. In each
round the server sends every live client one message and collects one reply; a client that
does not reply has dropped. Every message is an immutable object whose ``nbytes`` counts a
fixed-width encoding: 1 byte message kind, 4 bytes per party id, 32-byte keys and seeds,
64-byte signatures, shares as ``share_size()`` bytes, vectors at their ring dtype, and
survivor sets as a bitmap over the cohort.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import ClassVar, Mapping

import numpy as np

from gradleak.defenses.secagg.constants import DIGEST_BYTES, HEADER_BYTES, ID_BYTES, KIND_BYTES, MASK_PURPOSE
from gradleak.defenses.secagg.shamir import share_size
from gradleak.errors import GradleakError, RoundStopped

ROUNDS = ("advertise", "share", "mask", "consistency", "unmask")
TITLES = {
    "advertise": "AdvertiseKeys",
    "share": "ShareKeys",
    "mask": "MaskedInputCollection",
    "consistency": "ConsistencyCheck",
    "unmask": "Unmasking",
}


class ProtocolError(GradleakError):
    """A message was rejected (wrong round, unknown or duplicate sender, wrong length, failed
    authentication); the party that rejected it is unchanged and may go on."""


class ProtocolAbort(RoundStopped):
    """The protocol cannot finish safely: too few live clients, or the server was caught lying."""


def bitmap(ids: frozenset[int], cohort: int) -> bytes:
    """A set of client ids as a little-endian bitmap over the cohort."""
    members = np.zeros(cohort, dtype=bool)
    members[list(ids)] = True
    return np.packbits(members, bitorder="little").tobytes()


def binding(session: bytes, cohort: int, threshold: int, graph: bytes, dim: int, bits: int, active: bool) -> bytes:
    """SHA-256 of everything a Setup fixes: session id, participants (cohort and graph digest),
    threshold, vector shape and mode. It salts every derived key, is the associated data of every
    encrypted share and is signed in active mode, so clients shown different parameters cannot
    complete one session together and no message carries over to another session."""
    fixed = b"".join(x.to_bytes(4, "little") for x in (cohort, threshold, dim, bits, int(active)))
    return hashlib.sha256(b"gradleak/secagg/session" + session + fixed + graph).digest()


def advert_payload(bound: bytes, sender: int, cipher_public: bytes, mask_public: bytes, model_digest: bytes = b"") -> bytes:
    """What a client signs in AdvertiseKeys (active mode): its keys and the digest of the model it
    received, bound to itself and the session."""
    return b"advertise" + bound + sender.to_bytes(ID_BYTES, "little") + cipher_public + mask_public + model_digest


def mask_purpose(model_digest: bytes) -> bytes:
    """The HKDF label of the pairwise mask seed s_uv derived by a client that committed to
    ``model_digest`` (empty: unbound): two clients that received different models derive
    different seeds, so their masks do not cancel whatever the server relays."""
    return MASK_PURPOSE + model_digest


def survivors_payload(bound: bytes, survivors: frozenset[int], cohort: int) -> bytes:
    """What a client signs in ConsistencyCheck: the survivor set U3 of this session."""
    return b"survivors" + bound + bitmap(survivors, cohort)


def upload_payload(bound: bytes, sender: int, vector: np.ndarray) -> bytes:
    """What a client signs with its masked input (active mode): the vector's digest in this session."""
    return b"masked" + bound + sender.to_bytes(ID_BYTES, "little") + hashlib.sha256(vector.tobytes()).digest()


def seed_commitment(bound: bytes, sender: int, seed: bytes) -> bytes:
    """H(session, u, b_u): lets the server check a reconstructed self-mask seed, as s_u^PK checks
    a reconstructed s_u^SK (a hash commitment; b_u is 256 uniform bits, so it hides b_u)."""
    return hashlib.sha256(b"self-mask" + bound + sender.to_bytes(ID_BYTES, "little") + seed).digest()


@dataclass(frozen=True, eq=False)
class Message:
    """Immutable once built: mappings are frozen, so a relayed message cannot be edited in transit."""

    round: ClassVar[str]

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                object.__setattr__(self, f.name, MappingProxyType(dict(value)))

    @property
    def nbytes(self) -> int:
        raise NotImplementedError


# Server -> client


@dataclass(frozen=True, eq=False)
class Setup(Message):
    """Round 0 request: the session, the client's neighbours (SecAgg+ graph), the digest of the
    whole graph and the parameters."""

    round = "advertise"
    recipient: int
    session: bytes
    cohort: int
    threshold: int
    neighbors: frozenset[int]
    dim: int
    bits: int
    active: bool = False
    graph: bytes = bytes(DIGEST_BYTES)

    @property
    def nbytes(self) -> int:
        return HEADER_BYTES + len(self.session) + 3 * 4 + 2 + len(self.graph) + ID_BYTES * len(self.neighbors)

    @property
    def bound(self) -> bytes:
        return binding(self.session, self.cohort, self.threshold, self.graph, self.dim, self.bits, self.active)


@dataclass(frozen=True, eq=False)
class KeyBroadcast(Message):
    """Round 1 request: the advertised keys of the client's live neighbours (and its own)."""

    round = "share"
    recipient: int
    keys: Mapping[int, "AdvertiseKeys"] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        # Relayed adverts travel without their kind byte and session id (the client knows both).
        return HEADER_BYTES + sum(m.nbytes - KIND_BYTES - len(m.session) for m in self.keys.values())


@dataclass(frozen=True, eq=False)
class SharesRelay(Message):
    """Round 2 request: the encrypted shares other clients addressed to this client, by sender."""

    round = "mask"
    recipient: int
    ciphertexts: Mapping[int, bytes] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return HEADER_BYTES + sum(ID_BYTES + len(c) for c in self.ciphertexts.values())


@dataclass(frozen=True, eq=False)
class SurvivorList(Message):
    """Round 3 request (active mode): the set U3 of clients whose masked input arrived."""

    round = "consistency"
    recipient: int
    survivors: frozenset[int]
    cohort: int

    @property
    def nbytes(self) -> int:
        return HEADER_BYTES + (self.cohort + 7) // 8


@dataclass(frozen=True, eq=False)
class UnmaskRequest(Message):
    """Round 4 request: whose self-mask shares (survivors) and whose key shares (dropped) to reveal,
    with the survivors' signatures on U3 in active mode."""

    round = "unmask"
    recipient: int
    survivors: frozenset[int]
    dropped: frozenset[int]
    signatures: Mapping[int, bytes] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        ids = ID_BYTES * (len(self.survivors) + len(self.dropped))
        return HEADER_BYTES + ids + sum(ID_BYTES + len(s) for s in self.signatures.values())


# Client -> server: every reply names the session it belongs to (16 bytes), so one from another
# session is refused; in active mode the signatures cover the whole session binding.


@dataclass(frozen=True, eq=False)
class AdvertiseKeys(Message):
    """Round 0 reply: c_u^PK (share encryption), s_u^PK (masks) and, when the session binds the
    model, the SHA-256 digest of the model u received (32 bytes; empty when unbound), all signed
    in active mode."""

    round = "advertise"
    sender: int
    cipher_public: bytes
    mask_public: bytes
    signature: bytes = b""
    session: bytes = b""
    model_digest: bytes = b""

    @property
    def nbytes(self) -> int:
        keys = len(self.cipher_public) + len(self.mask_public)
        return HEADER_BYTES + len(self.session) + keys + len(self.signature) + len(self.model_digest)


@dataclass(frozen=True, eq=False)
class ShareKeys(Message):
    """Round 1 reply: e_{u,v} = AE(c_uv, u || v || share of s_u^SK || share of b_u) per neighbour v,
    and the commitment H(session, u, b_u) to the self-mask seed."""

    round = "share"
    sender: int
    ciphertexts: Mapping[int, bytes] = field(default_factory=dict)
    commitment: bytes = b""
    session: bytes = b""

    @property
    def nbytes(self) -> int:
        body = sum(ID_BYTES + len(c) for c in self.ciphertexts.values())
        return HEADER_BYTES + len(self.session) + len(self.commitment) + body


@dataclass(frozen=True, eq=False)
class MaskedInput(Message):
    """Round 2 reply: y_u = x_u + PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv) in Z_R, the
    neighbours whose encrypted shares failed to open (u masked with none of them), and in active
    mode u's signature on the vector."""

    round = "mask"
    sender: int
    vector: np.ndarray
    rejected: frozenset[int] = frozenset()
    signature: bytes = b""
    session: bytes = b""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.vector.flags.writeable = False

    @property
    def nbytes(self) -> int:
        extra = len(self.session) + ID_BYTES * (1 + len(self.rejected)) + len(self.signature)
        return HEADER_BYTES + self.vector.nbytes + extra


@dataclass(frozen=True, eq=False)
class ConsistencySignature(Message):
    """Round 3 reply (active mode): the client's signature on the session and U3."""

    round = "consistency"
    sender: int
    signature: bytes
    session: bytes = b""

    @property
    def nbytes(self) -> int:
        return HEADER_BYTES + len(self.session) + len(self.signature)


@dataclass(frozen=True, eq=False)
class UnmaskResponse(Message):
    """Round 4 reply: shares of b_v for survivors v and of s_v^SK for dropped v, never both."""

    round = "unmask"
    sender: int
    self_mask_shares: Mapping[int, int] = field(default_factory=dict)
    key_shares: Mapping[int, int] = field(default_factory=dict)
    session: bytes = b""

    @property
    def nbytes(self) -> int:
        count = len(self.self_mask_shares) + len(self.key_shares)
        return HEADER_BYTES + len(self.session) + count * (ID_BYTES + share_size())
