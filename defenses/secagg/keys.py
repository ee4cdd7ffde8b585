"""Key agreement, authenticated encryption and signatures for secure aggregation.

Bonawitz et al. (CCS 2017, Sec. 3 and 7) need three primitives; here all come from
``cryptography`` (OpenSSL) and every secret from its CSPRNG:

- key agreement KA: X25519; the raw shared point goes through HKDF-SHA256 with the session id
  as salt and a purpose label as info, giving a 256-bit key (a pairwise mask seed s_uv, or the
  key c_uv that encrypts shares between u and v);
- authenticated encryption AE for shares in transit: AES-256-GCM with a random 96-bit nonce
  (both directions of a pair share c_uv, so nonces must not be derived from the pair) and the
  session, sender and recipient bound as associated data;
- signatures SIG for the active-adversary mode: Ed25519 identity keys from a PKI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gradleak.defenses.secagg.messages import ProtocolError

PUBLIC_KEY_BYTES = 32
PRIVATE_KEY_BYTES = 32
SIGNATURE_BYTES = 64
NONCE_BYTES = 12
TAG_BYTES = 16

_RAW = serialization.Encoding.Raw
_RAW_PUBLIC = serialization.PublicFormat.Raw
_RAW_PRIVATE = serialization.PrivateFormat.Raw
_NO_ENCRYPTION = serialization.NoEncryption()


@dataclass(frozen=True, eq=False)
class KeyPair:
    """An X25519 key pair with its public key already serialised (32 bytes)."""

    private: X25519PrivateKey
    public: bytes

    @classmethod
    def generate(cls) -> "KeyPair":
        private = X25519PrivateKey.generate()
        return cls(private, private.public_key().public_bytes(_RAW, _RAW_PUBLIC))

    def secret_int(self) -> int:
        """The private key as an integer < 2^256, the form Shamir shares it in."""
        return int.from_bytes(self.private.private_bytes(_RAW, _RAW_PRIVATE, _NO_ENCRYPTION), "little")


def private_key_from_int(value: int) -> X25519PrivateKey:
    """Rebuild a private key from its reconstructed integer."""
    if not 0 <= value < 1 << (8 * PRIVATE_KEY_BYTES):
        raise ProtocolError("a reconstructed X25519 private key does not fit 32 bytes: the shares were corrupt")
    return X25519PrivateKey.from_private_bytes(value.to_bytes(PRIVATE_KEY_BYTES, "little"))


def public_bytes(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(_RAW, _RAW_PUBLIC)


def agree(private: X25519PrivateKey, peer_public: bytes, purpose: bytes, session: bytes) -> bytes:
    """KA.agree followed by HKDF-SHA256: a 256-bit key both ends of the pair derive alike."""
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # a wrong length or a low-order point
        raise ProtocolError(f"key agreement failed on a malformed public key: {exc}") from None
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=session, info=b"gradleak/secagg/" + purpose).derive(shared)


def usable_public_key(public: bytes) -> bool:
    """Whether X25519 with this public key gives a shared secret at all: low-order points (the
    all-zero key among them) give the all-zero secret, which OpenSSL refuses (RFC 7748, Sec. 6.1)."""
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return False
    return True


def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """AES-256-GCM: nonce || ciphertext || tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, blob: bytes, associated: bytes) -> bytes:
    """Decrypt and authenticate ``seal``'s output, or raise :class:`ProtocolError`."""
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated)
    except (InvalidTag, ValueError):
        raise ProtocolError("an encrypted share failed authentication: it was altered or misrouted") from None


def sealed_size(plaintext_bytes: int) -> int:
    return NONCE_BYTES + plaintext_bytes + TAG_BYTES


def new_identity() -> Ed25519PrivateKey:
    """A long-term Ed25519 signing key (its public half is registered in the PKI)."""
    return Ed25519PrivateKey.generate()


def identity_public(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(_RAW, _RAW_PUBLIC)


def sign(private: Ed25519PrivateKey, data: bytes) -> bytes:
    return private.sign(data)


def verify(public: bytes, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
