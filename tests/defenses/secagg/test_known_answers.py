"""Known-answer tests: the primitives against published vectors, the project's own mask expansion and
key derivation against pinned vectors, and the server's whole view against the masked uploads.

A weak PRG or a pairwise key the server can compute passes every round-trip test (masks still
cancel); only fixed expected outputs and an attempt to unmask from the server's view catch them.
"""

import hashlib
import hmac

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from scipy.stats import chisquare

from gradleak.defenses.secagg import keys, prg, shamir
from gradleak.defenses.secagg.client import point
from gradleak.defenses.secagg.constants import MASK_PURPOSE

# RFC 7748, Sec. 6.1 (X25519 Diffie-Hellman); keys are little-endian byte strings.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with hmac, independent of the library the project uses."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def test_x25519_matches_rfc_7748():
    # Sec. 5.2: one scalar multiplication.
    scalar = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    out = X25519PrivateKey.from_private_bytes(scalar).exchange(X25519PublicKey.from_public_bytes(u))
    assert out.hex() == "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
    # Sec. 6.1, through the project's own key handling (Shamir's integer form and back).
    alice = keys.private_key_from_int(int.from_bytes(ALICE_PRIVATE, "little"))
    bob = keys.private_key_from_int(int.from_bytes(BOB_PRIVATE, "little"))
    assert keys.public_bytes(alice) == ALICE_PUBLIC and keys.public_bytes(bob) == BOB_PUBLIC
    assert alice.exchange(X25519PublicKey.from_public_bytes(BOB_PUBLIC)) == SHARED


def test_hkdf_matches_rfc_5869_case_1():
    okm = hkdf_sha256(bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_the_pairwise_key_is_hkdf_of_the_x25519_secret_and_pinned():
    alice = keys.private_key_from_int(int.from_bytes(ALICE_PRIVATE, "little"))
    bob = keys.private_key_from_int(int.from_bytes(BOB_PRIVATE, "little"))
    salt = bytes(16)
    derived = keys.agree(alice, BOB_PUBLIC, MASK_PURPOSE, salt)
    assert derived == keys.agree(bob, ALICE_PUBLIC, MASK_PURPOSE, salt)
    assert derived == hkdf_sha256(SHARED, salt, b"gradleak/secagg/" + MASK_PURPOSE, 32)
    assert derived.hex() == "b23df8b610b3b10fcb7f2f205028bd220b55e710f10c1275d630de50791db9c3"


def test_aes_ctr_matches_nist_sp_800_38a():
    counter = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    plaintext = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    cases = {  # F.5.1 (CTR-AES128.Encrypt) and F.5.5 (CTR-AES256.Encrypt), first two blocks
        "2b7e151628aed2a6abf7158809cf4f3c": "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff",
        "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4":
            "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5",
    }
    for key, ciphertext in cases.items():
        stream = prg.ctr_keystream(bytes.fromhex(key), counter, 32)
        assert bytes(a ^ b for a, b in zip(plaintext, stream)).hex() == ciphertext


def test_the_mask_expansion_is_aes_256_ctr_from_a_zero_counter_and_pinned():
    seed = bytes(range(32))
    words = prg.expand(seed, 4, np.uint32)
    assert [int(w) for w in words] == [0xB60090F2, 0xD09F492A, 0x6A9AF3A9, 0x80772EDD]
    stream = prg.ctr_keystream(seed, bytes(16), 16)
    assert words.tobytes() == stream and prg.expand(seed, 2, np.uint64).tobytes() == stream
    # Every seed byte matters: flipping the last one changes every word.
    other = prg.expand(seed[:-1] + bytes([seed[-1] ^ 1]), 4, np.uint32)
    assert not np.any(other == words)


def _uniform_p(values: np.ndarray) -> float:
    return chisquare(np.bincount((values >> np.uint32(24)).astype(np.int64), minlength=256)).pvalue


def test_the_honest_but_curious_servers_view_does_not_unmask_any_survivor(session):
    """Everything the server holds (public keys, relayed ciphertexts, masked uploads, the self-mask
    seeds of survivors and the mask keys of dropped clients it legitimately rebuilds) still leaves
    each survivor's upload masked by pairwise keys it cannot compute."""
    n, dim, dropped = 6, 1 << 13, 5
    s = session(n, dim=dim)
    s.inputs = [np.full(dim, 7 * u, np.uint32) for u in range(n)]  # constant inputs: any leak shows
    s.step()
    s.step()
    s.step(skip={dropped})
    responses = s.step()
    server = s.server
    survivors = sorted(server.survivors)
    # What the server may compute: each survivor's b_u and the dropped client's s^SK.
    seeds = {u: shamir.reconstruct([(point(m.sender), m.self_mask_shares[u]) for m in responses], server.threshold)
             for u in survivors}
    dropped_key = keys.private_key_from_int(
        shamir.reconstruct([(point(m.sender), m.key_shares[dropped]) for m in responses], server.threshold)
    )
    publics = {u: server.adverts[u].mask_public for u in range(n)}
    known_private = [dropped_key, X25519PrivateKey.generate()]  # rebuilt keys, and its own
    for upload in server.masked_uploads:
        u = upload.sender
        residue = upload.vector.copy()
        prg.add_mask(residue, seeds[u].to_bytes(32, "little"), -1)
        prg.add_mask(residue, keys.agree(dropped_key, publics[u], MASK_PURPOSE, server.bound), +1 if u > dropped else -1)
        # Try every pairwise seed the server could derive for the remaining pairs.
        for w in survivors:
            if w == u:
                continue
            candidates = [keys.agree(k, publics[w], MASK_PURPOSE, server.bound) for k in known_private]
            candidates += [keys.agree(k, publics[u], MASK_PURPOSE, server.bound) for k in known_private]
            for seed in candidates:
                for sign in (+1, -1):
                    trial = residue.copy()
                    prg.add_mask(trial, seed, sign)
                    assert np.mean(trial == s.inputs[u]) < 1e-3
        assert np.mean(residue == s.inputs[u]) < 1e-3
        assert _uniform_p(residue) > 1e-6  # still looks uniform, although x_u is a constant
    # The result of the honest protocol is only the sum.
    assert np.array_equal(s.server.result, s.expected(survivors))
