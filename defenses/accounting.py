"""The privacy accountant: epsilon for a noise multiplier, and the noise multiplier for an epsilon.

Every Gaussian DP mechanism in gradleak (DP-SGD, DP-FedAvg, distributed DP) releases, at each
of ``steps`` steps, a sum of contributions clipped to L2 norm ``C`` plus N(0, sigma^2 C^2),
over a Poisson sample with rate ``q`` (each example, or each client, is in a step's sample
independently with probability ``q``; ``q = 1`` means everyone, every step). Its guarantee
under add-or-remove-one neighbouring is the T-fold self-composition of the Poisson-subsampled
Gaussian mechanism, which `dp-accounting` (Google) computes two ways:

- ``pld``: privacy loss distributions (Koskela et al. 2020; Doroshenko et al. 2022), tight up to
  the discretisation, which is pessimistic, so the reported epsilon is still an upper bound;
- ``rdp``: Renyi DP (Mironov 2017; Mironov, Talwar, Zhang 2019), a looser upper bound.

The PLD's grid spans the privacy loss, so it grows with epsilon: where RDP's bound is past
:data:`PLD_LIMIT` (no meaningful guarantee is left) it would take minutes, and the RDP bound is
used instead; :func:`account` says which one answered.

Cross-check from the literature (q = 0.125, 24 steps, delta = 1e-5, sigma = 1.384):
PLD 2.62, RDP 3.00.

:class:`DPSettings` is the block of settings every DP defense's config shares: it takes either a
target ``epsilon`` (sigma is calibrated) or a ``noise_multiplier`` (epsilon is computed).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Annotated, Callable, Literal, get_args

import dp_accounting
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from gradleak.errors import GradleakError
from gradleak.spec import Range

Accountant = Literal["pld", "rdp"]
# A deliberately broken mechanism, only for checking that an audit catches it (gradleak audit):
# "weak-noise" adds a tenth of the noise the accountant assumes, "no-clip" skips clipping.
PlantedBug = Literal["none", "weak-noise", "no-clip"]
ACCOUNTANTS: tuple[str, ...] = get_args(Accountant)

# Width of the PLD's privacy-loss grid. dp-accounting's default (1e-4) is 10x slower; 1e-3
# changes epsilon by under 0.1% up to 10,000 steps and stays pessimistic (an upper bound).
PLD_DISCRETIZATION = 1e-3
# Where RDP's bound exceeds this, the PLD accountant hands over to RDP; e^100 guarantees nothing.
PLD_LIMIT = 100.0
# Calibration for a PLD target above this uses RDP. Half the limit, because RDP's bound exceeds
# PLD's (by 5% at epsilon 50): a PLD-calibrated sigma must still be accounted by PLD.
PLD_CALIBRATION_LIMIT = PLD_LIMIT / 2
# Below this the privacy loss is so wide that the PLD grid takes minutes and epsilon is past
# any meaningful guarantee; calibration reports the target as unreachable instead.
MIN_NOISE_MULTIPLIER = 0.05
# Calibrated sigma is within this of the smallest sigma meeting the target (never below it).
CALIBRATION_TOLERANCE = 1e-4
# Noised releases (steps or rounds) one guarantee may cover: a million DP-SGD steps is beyond any
# training here, and the PLD accountant's composition grows with it.
MAX_STEPS = 1_000_000


def bug_noise_scale(bug: PlantedBug) -> float:
    """The fraction of the accounted noise a mechanism with ``bug`` planted really adds."""
    return 0.1 if bug == "weak-noise" else 1.0


def _accountant(name: str) -> Callable[[], dp_accounting.PrivacyAccountant]:
    if name == "pld":
        return lambda: PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    if name == "rdp":
        return RdpAccountant
    raise GradleakError(f"unknown accountant {name!r}; choose one of: {', '.join(ACCOUNTANTS)}")


def _check(sample_rate: float, steps: int, delta: float) -> None:
    if not 0 < sample_rate <= 1:
        raise GradleakError(f"sample rate must be in (0, 1], not {sample_rate}")
    if steps < 1 or int(steps) != steps:
        raise GradleakError(f"steps must be a positive whole number, not {steps}")
    if not 0 < delta < 1:
        raise GradleakError(f"delta must be in (0, 1), not {delta}; a common choice is below 1/dataset size")


def dp_event(noise_multiplier: float, sample_rate: float, steps: int) -> dp_accounting.DpEvent:
    """``steps`` compositions of the Gaussian mechanism (sigma) on a Poisson sample of rate ``sample_rate``."""
    step = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sample_rate < 1:
        step = dp_accounting.PoissonSampledDpEvent(sample_rate, step)
    return dp_accounting.SelfComposedDpEvent(step, int(steps))


def _quiet_absl() -> None:
    # The RDP accountant logs a warning per fractional order whose series does not converge and
    # then drops that order, which is the correct (still an upper bound) outcome; keep it off the CLI.
    logging.getLogger("absl").setLevel(logging.ERROR)


def _epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    ledger = _accountant(accountant)()
    ledger.compose(dp_event(noise_multiplier, sample_rate, steps))
    return float(ledger.get_epsilon(delta))


@functools.lru_cache(maxsize=256)
def account(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: Accountant = "pld"
) -> tuple[float, str]:
    """The epsilon of (epsilon, delta)-DP reached by ``steps`` Poisson-subsampled Gaussian steps,
    and the accountant that computed it (``rdp`` for a ``pld`` request past :data:`PLD_LIMIT`)."""
    _check(sample_rate, steps, delta)
    _accountant(accountant)
    if noise_multiplier < 0:
        raise GradleakError(f"noise multiplier must be non-negative, not {noise_multiplier}")
    if noise_multiplier == 0:
        return math.inf, accountant
    _quiet_absl()
    if accountant == "pld":
        bound = _epsilon(noise_multiplier, sample_rate, steps, delta, "rdp")
        if bound > PLD_LIMIT:
            return bound, "rdp"
    return _epsilon(noise_multiplier, sample_rate, steps, delta, accountant), accountant


def compute_epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: Accountant = "pld"
) -> float:
    """The epsilon of (epsilon, delta)-DP reached by ``steps`` Poisson-subsampled Gaussian steps."""
    return account(noise_multiplier, sample_rate, steps, delta, accountant)[0]


@functools.lru_cache(maxsize=256)
def calibrate_noise_multiplier(
    epsilon: float, sample_rate: float, steps: int, delta: float, accountant: Accountant = "pld"
) -> float:
    """The smallest sigma (within :data:`CALIBRATION_TOLERANCE`) whose epsilon is at most ``epsilon``."""
    _check(sample_rate, steps, delta)
    if not 0 < epsilon < math.inf:
        raise GradleakError(f"target epsilon must be positive and finite, not {epsilon}")
    if epsilon > PLD_CALIBRATION_LIMIT:
        accountant = "rdp"  # RDP's sigma also meets the target under PLD, and is quick to find
    make_accountant = _accountant(accountant)
    _quiet_absl()

    def event(sigma: float) -> dp_accounting.DpEvent:
        return dp_event(sigma, sample_rate, steps)

    def gap(sigma: float) -> float:
        ledger = make_accountant()
        return ledger.compose(event(sigma)).get_epsilon(delta) - epsilon

    # Bracket by halving or doubling from sigma = 1; calibrate_dp_mechanism's own search
    # would start at sigma = 0, where the PLD of the Gaussian is unbounded.
    low, high = 1.0, 1.0
    if gap(1.0) > 0:
        while gap(high) > 0:
            low, high = high, high * 2
    else:
        while (reached := gap(low) + epsilon) <= epsilon:
            if low / 2 < MIN_NOISE_MULTIPLIER:
                raise GradleakError(
                    f"epsilon={epsilon} is beyond what calibration covers: noise multiplier {low:.3g} already "
                    f"gives epsilon {reached:.3g}; pass noise_multiplier= directly if you mean so little noise"
                )
            low, high = low / 2, low
    return float(
        dp_accounting.calibrate_dp_mechanism(
            make_accountant,
            event,
            epsilon,
            delta,
            dp_accounting.ExplicitBracketInterval(low, high),
            tol=CALIBRATION_TOLERANCE,
        )
    )


@dataclass(frozen=True)
class DPSettings:
    """The privacy block of every Gaussian DP defense's config.

    Give either ``epsilon`` (the target; sigma is calibrated by the accountant) or
    ``noise_multiplier`` (sigma; epsilon is computed). ``sample_rate`` and ``steps`` declare
    how the mechanism is used over the whole training: the Poisson sampling rate of whatever
    is protected (an example for DP-SGD, a client for DP-FedAvg) and the number of noised
    releases (DP-SGD steps, or rounds). The defaults describe one full-batch release.
    """

    epsilon: Annotated[float | None, Range(0, None, low_open=True)] = None
    noise_multiplier: Annotated[float | None, Range(0, None)] = None
    clip: Annotated[float, Range(0, None, low_open=True)] = 1.0  # C; Abadi et al. 2016 (MNIST) use 4, DP-FedAvg tunes it per model
    delta: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 1e-5  # Abadi et al. 2016: 1e-5, below 1/N for their 60,000 examples
    sample_rate: Annotated[float, Range(0, 1, low_open=True)] = 1.0
    steps: Annotated[int, Range(1, MAX_STEPS)] = 1
    accountant: Accountant = "pld"

    def __post_init__(self) -> None:
        if self.epsilon is None and self.noise_multiplier is None:
            raise GradleakError(
                "give epsilon= (sigma is calibrated to reach it) or noise_multiplier= (epsilon is "
                "computed), e.g. dp-sgd:epsilon=3,clip=1,delta=1e-5"
            )
        if self.epsilon is not None and self.noise_multiplier is not None:
            raise GradleakError(
                "epsilon= and noise_multiplier= are both given, but each determines the other; keep one"
            )
        if self.noise_multiplier is not None and self.noise_multiplier < 0:
            raise GradleakError(f"noise_multiplier must be non-negative, not {self.noise_multiplier}")
        if self.epsilon is not None and not 0 < self.epsilon < math.inf:
            raise GradleakError(f"epsilon must be positive and finite, not {self.epsilon}")
        if not 0 < self.clip < math.inf:
            raise GradleakError(f"clip must be a positive norm bound, not {self.clip}")
        _check(self.sample_rate, self.steps, self.delta)

    @property
    def sigma(self) -> float:
        """The noise multiplier in use: the given one, or the one calibrated to ``epsilon``."""
        if self.noise_multiplier is not None:
            return self.noise_multiplier
        return calibrate_noise_multiplier(self.epsilon, self.sample_rate, self.steps, self.delta, self.accountant)

    def achieved_epsilon(self) -> float:
        """The epsilon that ``sigma`` reaches for the declared sampling rate, steps and delta."""
        return compute_epsilon(self.sigma, self.sample_rate, self.steps, self.delta, self.accountant)
