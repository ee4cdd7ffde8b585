"""The mask generator: a 32-byte seed expanded into a uniform vector of Z_R, R = 2^b.

PRG(seed) is the AES-256-CTR keystream under key ``seed`` (zero counter block), read as
little-endian unsigned words and reduced modulo R, as in Bonawitz et al.'s implementation
(CCS 2017, Sec. 7: "AES-CTR as the PRG"). Every seed is single-use: a fresh self-mask seed b_u
per round, and pairwise seeds derived per round from fresh keys, so the zero counter is never
reused under one key. Because R divides 2^(8 * itemsize), reducing uniform words mod R keeps
them uniform. The whole vector comes from one OpenSSL call: no Python loop per element, and
the seed is never folded into fewer bits (a known weakness of one popular implementation).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gradleak.errors import GradleakError

SEED_BYTES = 32
_COUNTER_BLOCK = bytes(16)


def keystream(seed: bytes, nbytes: int) -> bytes:
    """``nbytes`` of the AES-256-CTR keystream under ``seed``."""
    if len(seed) != SEED_BYTES:
        raise GradleakError(f"a mask seed must be {SEED_BYTES} bytes, not {len(seed)}")
    return ctr_keystream(seed, _COUNTER_BLOCK, nbytes)


def ctr_keystream(key: bytes, counter_block: bytes, nbytes: int) -> bytes:
    """AES-CTR keystream from ``counter_block`` (NIST SP 800-38A, Sec. 6.5): E_K(T_1) || E_K(T_2) || ..."""
    # CTR is a stream mode: update() returns every byte and finalize() adds none.
    return Cipher(algorithms.AES(key), modes.CTR(counter_block)).encryptor().update(_zeros(nbytes))


@lru_cache(maxsize=8)
def _zeros(nbytes: int) -> bytes:
    return bytes(nbytes)


def expand(seed: bytes, length: int, dtype: np.dtype | type) -> np.ndarray:
    """PRG(seed) as ``length`` words of ``dtype`` (uniform; reduce mod R when R < 2^(8 * itemsize))."""
    dtype = np.dtype(dtype)
    return np.frombuffer(keystream(seed, length * dtype.itemsize), dtype=dtype.newbyteorder("<"))


def add_mask(total: np.ndarray, seed: bytes, sign: int) -> None:
    """``total += sign * PRG(seed)`` in place, wrapping modulo 2^(8 * itemsize)."""
    mask = expand(seed, len(total), total.dtype)
    if sign > 0:
        np.add(total, mask, out=total)
    else:
        np.subtract(total, mask, out=total)
