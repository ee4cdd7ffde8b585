"""Masks: the PRG, key agreement, share encryption, and a masked upload that looks uniform."""

import os

import numpy as np
import pytest
from scipy.stats import chisquare

from gradleak.defenses.secagg import keys, prg
from gradleak.defenses.secagg.fixedpoint import FixedPoint
from gradleak.defenses.secagg.messages import ProtocolError
from gradleak.errors import GradleakError

ALPHA = 1e-6  # false-alarm rate of each uniformity test (keys are fresh each run)


def test_the_prg_is_deterministic_in_its_seed_and_differs_across_seeds():
    seed = os.urandom(32)
    a = prg.expand(seed, 1000, np.uint32)
    assert np.array_equal(a, prg.expand(seed, 1000, np.uint32))
    assert np.array_equal(a[:10], prg.expand(seed, 10, np.uint32))  # a prefix of the same stream
    assert not np.array_equal(a, prg.expand(os.urandom(32), 1000, np.uint32))


def test_the_prg_needs_a_full_256_bit_seed():
    with pytest.raises(GradleakError, match="32 bytes"):
        prg.expand(b"\x00" * 4, 10, np.uint32)


def test_adding_and_subtracting_a_mask_cancels():
    seed, x = os.urandom(32), np.arange(100, dtype=np.uint32)
    y = x.copy()
    prg.add_mask(y, seed, +1)
    assert not np.array_equal(x, y)
    prg.add_mask(y, seed, -1)
    assert np.array_equal(x, y)


def test_key_agreement_is_symmetric_and_bound_to_purpose_and_session():
    a, b = keys.KeyPair.generate(), keys.KeyPair.generate()
    session = os.urandom(16)
    ab = keys.agree(a.private, b.public, b"mask", session)
    assert ab == keys.agree(b.private, a.public, b"mask", session) and len(ab) == 32
    assert ab != keys.agree(a.private, b.public, b"share", session)
    assert ab != keys.agree(a.private, b.public, b"mask", os.urandom(16))
    assert keys.private_key_from_int(a.secret_int()).public_key().public_bytes_raw() == a.public


def test_a_malformed_public_key_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="malformed public key"):
        keys.agree(keys.KeyPair.generate().private, b"\x01" * 31, b"mask", b"s")


def test_sealed_shares_open_only_unaltered_and_for_the_right_pair():
    key = os.urandom(32)
    blob = keys.seal(key, b"share", b"session|u|v")
    assert len(blob) == keys.sealed_size(5)
    assert keys.open_sealed(key, blob, b"session|u|v") == b"share"
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    for bad_key, bad_blob, associated in [(key, tampered, b"session|u|v"), (key, blob, b"session|v|u"),
                                          (os.urandom(32), blob, b"session|u|v")]:
        with pytest.raises(ProtocolError, match="authentication"):
            keys.open_sealed(bad_key, bad_blob, associated)


def _p_values(vector: np.ndarray, bits: int = 32) -> tuple[float, float]:
    """Chi-square p-values for the top byte and the bottom byte of each entry being uniform."""
    values = vector.astype(np.uint64)
    top = np.bincount((values >> (bits - 8)).astype(np.int64), minlength=256)
    bottom = np.bincount((values & 0xFF).astype(np.int64), minlength=256)
    return chisquare(top).pvalue, chisquare(bottom).pvalue


def test_a_single_masked_upload_is_indistinguishable_from_uniform(session):
    # Fixed, very non-uniform test data (smooth, small values); the keys and masks are fresh.
    s = session(4, dim=1 << 16, seed=0)
    encoder = FixedPoint(clip=1.0, value_bits=12)
    rng = np.random.default_rng(0)
    for u in range(4):
        s.inputs[u] = encoder.encode(np.sin(np.arange(1 << 16) / 100.0), rng)
    assert max(_p_values(s.inputs[0])) < ALPHA  # the test can tell the raw input is not uniform
    s.step()
    s.step()
    (upload,) = [m.vector for m in s.step() if m.sender == 0]
    assert min(_p_values(upload)) > ALPHA
    # Equal inputs give different uploads: nothing of x_0 = x_1 shows through.
    other = next(m.vector for m in s.server.masked_uploads if m.sender == 1)
    assert np.mean(upload == other) < 1e-3


def test_pairwise_masks_alone_cancel_in_the_sum_but_self_masks_do_not(session):
    s = session(3, dim=64)
    s.step()
    s.step()
    uploads = s.step()
    total = sum(m.vector.astype(np.uint64) for m in uploads).astype(np.uint32)
    # Before unmasking the sum of masked uploads is still hidden by the three self masks...
    assert not np.array_equal(total, s.expected(range(3)))
    # ...and after the server removes them it is exactly the sum of the inputs.
    assert np.array_equal(s.finish(), s.expected(range(3)))
