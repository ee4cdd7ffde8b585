"""Fixed-point encoding of real vectors into the ring Z_R, R = 2^b, where secure aggregation sums.

Secure aggregation adds integers modulo R, so a float update is first clipped to [-c, c] and
quantised to the signed grid {-L, ..., L} with L = 2^(k-1) - 1 (k value bits including the sign):

    q = SR(x * L / c),   SR(y) = floor(y) + Bernoulli(y - floor(y))

Stochastic rounding SR is unbiased, E[q] = x * L / c, so the decoded sum is an unbiased estimate
of the clipped sum (Bonawitz et al., CCS 2017, Sec. 3, sum integers in Z_R; the stochastic
rounding follows Kairouz et al., ICML 2021, "The distributed discrete Gaussian mechanism", Sec. 4).
A weighted contribution w * q (FedAvg's n_k) stays an integer. Values live in two's complement
modulo R, so decoding reads a sum as a signed integer in [-R/2, R/2): that is exact as long as
the true sum never leaves that range, which :meth:`FixedPoint.check_budget` guarantees before
anything is summed (log2(total weight) + k <= b).

With the default b = 32 a masked entry is a uint32: no larger than the float32 it replaces.
numpy's unsigned arithmetic wraps modulo 2^(8 * itemsize), which is a multiple of R, so the
ring operations are plain ``+``/``-`` followed by :meth:`FixedPoint.reduce`.

Distributed DP adds integer noise on this same grid: quantise with :meth:`quantize`,
add the noise to the signed integers, then map with :meth:`to_ring`; pass the largest total noise
magnitude as ``headroom`` to :meth:`check_budget`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gradleak.errors import GradleakError

MAX_BITS = 64
# Stochastic rounding computes x * L / c in float64 (53-bit mantissa); 5 spare bits keep its
# rounding error below 1/32 of a grid step.
MAX_VALUE_BITS = 48


def ring_dtype(bits: int) -> np.dtype:
    """The smallest unsigned numpy dtype holding b-bit ring elements."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if bits <= 8 * np.dtype(dtype).itemsize:
            return np.dtype(dtype)
    raise GradleakError(f"bits={bits} is more than {MAX_BITS}; choose a ring of at most 2^{MAX_BITS}")


@dataclass(frozen=True)
class FixedPoint:
    """Clip to [-clip, clip], quantise to ``value_bits`` signed bits, work modulo 2^``bits``."""

    clip: float
    value_bits: int
    bits: int = 32  # b = 32: a masked entry is the size of a float32

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise GradleakError(f"clip must be a positive finite number, not {self.clip}")
        if not 1 <= self.bits <= MAX_BITS:
            raise GradleakError(f"bits must be between 1 and {MAX_BITS}, not {self.bits}")
        if not 2 <= self.value_bits <= min(self.bits, MAX_VALUE_BITS):
            raise GradleakError(
                f"value_bits must be between 2 and {min(self.bits, MAX_VALUE_BITS)} for a {self.bits}-bit ring, "
                f"not {self.value_bits}"
            )

    @classmethod
    def fitting(cls, total_weight: int, clip: float, bits: int = 32, headroom: int = 0) -> "FixedPoint":
        """The finest grid whose sums of total weight ``total_weight`` cannot wrap in 2^``bits``."""
        if total_weight < 1:
            raise GradleakError(f"the total weight must be at least 1, not {total_weight}")
        top = (1 << (bits - 1)) - 1 - headroom
        value_bits = min(bits, MAX_VALUE_BITS)
        while value_bits >= 2 and total_weight * ((1 << (value_bits - 1)) - 1) > top:
            value_bits -= 1
        if value_bits < 2:
            raise GradleakError(
                f"a {bits}-bit ring cannot hold a sum of total weight {total_weight}; raise bits "
                f"to at least {math.ceil(math.log2(total_weight)) + 2}"
            )
        return cls(clip=clip, value_bits=value_bits, bits=bits)

    @property
    def modulus(self) -> int:
        """R = 2^b."""
        return 1 << self.bits

    @property
    def dtype(self) -> np.dtype:
        return ring_dtype(self.bits)

    @property
    def levels(self) -> int:
        """L = 2^(k-1) - 1: the grid is {-L, ..., L}, symmetric so clipping is unbiased in sign."""
        return (1 << (self.value_bits - 1)) - 1

    @property
    def step(self) -> float:
        """The grid spacing c / L in the input's units."""
        return self.clip / self.levels

    def check_budget(self, total_weight: int, headroom: int = 0) -> None:
        """Raise unless any sum of weighted inputs (total weight ``total_weight``) plus up to
        ``headroom`` in magnitude stays inside the signed range of Z_R, so it decodes exactly."""
        worst = total_weight * self.levels + headroom
        limit = (1 << (self.bits - 1)) - 1
        if worst > limit:
            extra = f" plus headroom {headroom}" if headroom else ""
            raise GradleakError(
                f"sums could wrap around: total weight {total_weight} at {self.value_bits} value bits{extra} "
                f"can reach {worst}, beyond 2^{self.bits - 1} - 1; secure aggregation needs "
                f"log2(total weight) + value_bits <= bits: lower value_bits or raise bits"
            )

    def quantize(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Clip and stochastically round to signed int64 grid points in [-L, L]."""
        x = np.asarray(x, dtype=np.float64)
        if not np.isfinite(x).all():
            raise GradleakError("cannot encode NaN or infinite values for secure aggregation")
        # Clip on the grid itself: c * (L / c) can round above L, and SR would then give L + 1.
        y = np.clip(x * (self.levels / self.clip), -self.levels, self.levels)
        floor = np.floor(y)
        return (floor + (rng.random(y.shape) < (y - floor))).astype(np.int64)

    def to_ring(self, q: np.ndarray) -> np.ndarray:
        """Signed integers -> Z_R elements in two's complement."""
        return self.reduce(np.asarray(q, dtype=np.int64).astype(np.uint64)).astype(self.dtype)

    def from_ring(self, s: np.ndarray) -> np.ndarray:
        """Z_R elements -> signed int64 in [-R/2, R/2)."""
        s = self.reduce(np.asarray(s).astype(np.uint64))
        if self.bits == 64:
            return s.view(np.int64)
        signed = s.astype(np.int64)
        signed[signed >= (1 << (self.bits - 1))] -= 1 << self.bits
        return signed

    def encode(self, x: np.ndarray, rng: np.random.Generator, weight: int = 1) -> np.ndarray:
        """``weight * quantize(x)`` in Z_R: one client's (weighted) contribution to the sum."""
        return self.to_ring(self.quantize(x, rng) * np.int64(weight))

    def decode(self, total: np.ndarray, total_weight: int = 1) -> np.ndarray:
        """A sum in Z_R -> the weighted mean in the input's units (float64)."""
        return self.from_ring(total).astype(np.float64) * (self.step / total_weight)

    def reduce(self, s: np.ndarray) -> np.ndarray:
        """Reduce modulo R in place (a no-op when R is the dtype's own modulus)."""
        if self.bits < 8 * s.dtype.itemsize:
            s &= s.dtype.type(self.modulus - 1)
        return s
