"""Shamir t-of-n secret sharing over the prime field GF(p) (Shamir, CACM 1979).

A secret s is the constant term of a random polynomial f of degree t - 1 over GF(p); party i
receives the share (x_i, f(x_i)) at a distinct nonzero point x_i. Any t shares determine f and
so s = f(0) by Lagrange interpolation at zero,

    s = sum_i y_i * lambda_i,   lambda_i = prod_{j != i} x_j / (x_j - x_i)   (mod p),

while t - 1 shares are consistent with every secret, each with exactly one polynomial: they
reveal nothing (information-theoretic secrecy).

Secure aggregation shares 32-byte secrets (a self-mask seed and an X25519 private key), so the
default field is the Mersenne prime p = 2^521 - 1 > 2^256. Speed: a client shares all its
secrets to all recipients at once with Horner's rule run on numpy object arrays (one Python-int
operation per coefficient and point, looped in C), since evaluation points are small integers.
Random coefficients come from ``os.urandom`` only.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from gradleak.errors import GradleakError

PRIME = (1 << 521) - 1  # M521, a Mersenne prime larger than any 256-bit secret

RandomBytes = Callable[[int], bytes]


def share_size(prime: int = PRIME) -> int:
    """Bytes needed to send one share value y in [0, p)."""
    return (prime.bit_length() + 7) // 8


def random_elements(count: int, prime: int = PRIME, randbytes: RandomBytes = os.urandom) -> list[int]:
    """``count`` uniform elements of GF(p): 128 extra random bits per element make the bias of
    reducing mod p below 2^-128."""
    width = (prime.bit_length() + 128 + 7) // 8
    pool = randbytes(width * count)
    return [int.from_bytes(pool[i * width : (i + 1) * width], "little") % prime for i in range(count)]


def split(
    secrets: Sequence[int],
    threshold: int,
    points: Sequence[int],
    prime: int = PRIME,
    randbytes: RandomBytes = os.urandom,
) -> list[list[int]]:
    """Share each secret t-of-n: ``result[j][i]`` is f_j(points[i]) for secret j.

    ``points`` are the recipients' distinct nonzero evaluation points x_i.
    """
    if not 1 <= threshold <= len(points):
        raise GradleakError(f"threshold {threshold} must be between 1 and the number of shares {len(points)}")
    if len(set(points)) != len(points) or any(not 0 < x < prime for x in points):
        raise GradleakError("Shamir evaluation points must be distinct and nonzero modulo the prime")
    if any(not 0 <= s < prime for s in secrets):
        raise GradleakError("a secret does not fit the Shamir field; use a larger prime")
    # coefficients[j] = [a_{t-1}, ..., a_1] of secret j, highest degree first for Horner
    coefficients = np.array(
        random_elements(len(secrets) * (threshold - 1), prime, randbytes), dtype=object
    ).reshape(len(secrets), threshold - 1)
    x = np.array(list(points), dtype=object)
    value = np.zeros((len(secrets), len(points)), dtype=object)
    for degree in range(threshold - 1):
        value = (value + coefficients[:, degree : degree + 1]) * x % prime
    value = (value + np.array(list(secrets), dtype=object)[:, None]) % prime
    return value.tolist()


@lru_cache(maxsize=4096)
def lagrange_at_zero(points: tuple[int, ...], prime: int = PRIME) -> tuple[int, ...]:
    """lambda_i with f(0) = sum_i lambda_i f(x_i) for every polynomial of degree < len(points)."""
    if len(set(points)) != len(points) or any(x % prime == 0 for x in points):
        raise GradleakError("Shamir reconstruction needs distinct nonzero evaluation points")
    numerator = 1
    for x in points:
        numerator = numerator * x % prime
    weights = []
    for i, xi in enumerate(points):
        denominator = xi
        for j, xj in enumerate(points):
            if j != i:
                denominator = denominator * (xj - xi) % prime
        weights.append(numerator * pow(denominator, -1, prime) % prime)
    return tuple(weights)


def reconstruct(shares: Sequence[tuple[int, int]], threshold: int, prime: int = PRIME) -> int:
    """The secret from at least ``threshold`` shares (x_i, y_i); uses the first ``threshold``."""
    if len(shares) < threshold:
        raise GradleakError(f"need {threshold} shares to reconstruct a secret, got {len(shares)}")
    chosen = sorted(shares[:threshold])
    weights = lagrange_at_zero(tuple(x for x, _ in chosen), prime)
    return sum(w * y for w, (_, y) in zip(weights, chosen)) % prime


def evaluate(shares: Sequence[tuple[int, int]], x: int, prime: int = PRIME) -> int:
    """f(x) for the polynomial of degree < len(shares) through ``shares``: checks a spare share
    against a reconstruction (Lagrange interpolation at x, Shamir 1979)."""
    value = 0
    for i, (xi, yi) in enumerate(shares):
        weight = 1
        for j, (xj, _) in enumerate(shares):
            if j != i:
                weight = weight * (x - xj) * pow(xi - xj, -1, prime) % prime
        value = (value + weight * yi) % prime
    return value
