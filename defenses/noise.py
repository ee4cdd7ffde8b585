"""Where DP randomness comes from: a CSPRNG keystream turned into uniforms and Gaussians on tensors.

A round's randomness is a ``torch.Generator``. Without a seed it is a :class:`PrivateGenerator`:
every draw a DP guarantee rests on (Gaussian noise, Poisson lots and cohorts, the discrete
sampler) is read from an AES-256-CTR keystream keyed from ``os.urandom`` (``cryptography``), never
from torch's or numpy's Mersenne/Philox state, which an observer of enough output can predict.
The torch state it also carries (seeded from ``secrets``) serves only draws no guarantee rests on.
A plain seeded ``torch.Generator`` is the experiment's path: reproducible, and not private
(:func:`is_private` is false, and results say so).

Uniforms take 53 keystream bits, ``u = (k + 1/2) 2^-53`` in (0, 1); Gaussians come from the
Box-Muller transform of two uniforms (Box, Muller, Ann. Math. Stat. 1958), in float64.

Floating-point attack: the set of floats ``fl(x + Z)`` can take depends on ``x`` (Mironov, "On
significance of the least significant bits for differential privacy", CCS 2012, Sec. 3), so a
release could reveal ``x`` through its low-order bits. As in his snapping mechanism (Sec. 5.2)
the noised value is rounded to a grid of power-of-two step ``Lambda``, so the released support is
``Lambda Z`` whatever ``x`` is: ``y = Lambda round((x + Z) / Lambda)`` in float64, with
``Lambda = 2^(floor(log2 std) - SNAP_BITS)`` (rounding error ``Lambda / 2``, 2^-13 of the noise's
standard deviation). The float64 sum is off by at most an ulp, ``2^-52 |x + Z|``, so the snapped
value differs from that of the exact sum only when ``x + Z`` lies within an ulp of a rounding
boundary (probability about ``2^-40`` for ``|x + Z|`` below ``2^12`` std). Mironov proves his bound
for the Laplace mechanism; for the Gaussian this is the same mitigation, stated, not proven.
"""

from __future__ import annotations

import math
import os
import secrets

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SNAP_BITS = 12  # Lambda = 2^(floor(log2 std) - 12): snapping costs a 2^-13 std rounding error
MANTISSA_BITS = 53  # float64: a uniform from 53 keystream bits is exact in the mantissa


class PrivateGenerator(torch.Generator):
    """A ``torch.Generator`` whose DP draws come from AES-256-CTR keyed with 32 bytes of ``os.urandom``."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        # torch.Generator.__new__ has already taken ``device``; its __init__ takes no arguments.
        self.manual_seed(secrets.randbits(63))  # only for draws no DP guarantee rests on
        key, counter = os.urandom(32), os.urandom(16)
        self._keystream = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()

    def words(self, n: int) -> np.ndarray:
        """``n`` uniformly random 64-bit words from the keystream."""
        return np.frombuffer(self._keystream.update(bytes(8 * n)), dtype=np.uint64)


def is_private(generator: torch.Generator) -> bool:
    """Whether draws from ``generator`` come from the CSPRNG (True) or from a seed (False: not private)."""
    return isinstance(generator, PrivateGenerator)


def uniform(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` float64 uniforms in (0, 1) on the generator's device."""
    if not is_private(generator):
        return torch.rand(n, generator=generator, dtype=torch.float64, device=generator.device)
    u = (generator.words(n) >> np.uint64(64 - MANTISSA_BITS)).astype(np.float64)
    u += 0.5
    u *= 2.0**-MANTISSA_BITS
    return torch.from_numpy(u).to(generator.device)


def standard_normal(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` float64 draws of N(0, 1) on the generator's device (Box-Muller from CSPRNG uniforms)."""
    if not is_private(generator):
        return torch.randn(n, generator=generator, dtype=torch.float64, device=generator.device)
    half = (n + 1) // 2
    u = uniform(2 * half, generator)
    radius, angle = u[:half].log_().mul_(-2).sqrt_(), u[half:].mul_(2 * math.pi)
    z = torch.empty(2 * half, dtype=torch.float64, device=u.device)
    torch.cos(angle, out=z[:half]).mul_(radius)
    torch.sin(angle, out=z[half:]).mul_(radius)
    return z[:n]


def poisson_mask(n: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Poisson sampling: each of ``n`` items is in independently with probability ``rate``."""
    return uniform(n, generator) < rate


def snap_step(std: float) -> float:
    """Lambda: the power-of-two grid a release with noise ``std`` is rounded to."""
    return 2.0 ** (math.floor(math.log2(std)) - SNAP_BITS)


def gaussian(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` (flat) plus N(0, std^2) on every entry, snapped to the grid ``Lambda Z`` in float64."""
    if std == 0:
        return x
    grid = snap_step(std)  # a power of two, so dividing by it is exact
    noised = standard_normal(x.numel(), generator).mul_(std).add_(x)
    return noised.div_(grid).round_().mul_(grid).to(x.dtype)


class NumpyStream:
    """The two numpy ``Generator`` methods the discrete samplers use, drawn from the CSPRNG."""

    def __init__(self, generator: PrivateGenerator) -> None:
        self.generator = generator

    def random(self, size: int | tuple[int, ...]) -> np.ndarray:
        """Uniforms in (0, 1) of shape ``size``."""
        shape = (size,) if isinstance(size, int) else tuple(size)
        return uniform(math.prod(shape), self.generator).cpu().numpy().reshape(shape)

    def geometric(self, p: float, size: int) -> np.ndarray:
        """Trials to the first success, ``ceil(ln U / ln(1 - p))`` (inverse CDF), as int64."""
        return np.ceil(np.log(self.random(size)) / math.log1p(-p)).astype(np.int64)


def numpy_rng(generator: torch.Generator) -> np.random.Generator | NumpyStream:
    """A numpy-style source for the discrete samplers: the CSPRNG, or numpy seeded from ``generator``."""
    if is_private(generator):
        return NumpyStream(generator)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return np.random.default_rng(seed)
