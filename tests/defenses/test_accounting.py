"""The accountant against published numbers, its inverse, and Opacus's accountants."""

import math

import pytest

from gradleak.defenses.accounting import DPSettings, calibrate_noise_multiplier, compute_epsilon
from gradleak.errors import GradleakError

# PAPERS.md, accounting cross-check: q = 0.125, 24 steps, delta = 1e-5, sigma = 1.384.
Q, T, DELTA, SIGMA = 0.125, 24, 1e-5, 1.384


@pytest.mark.parametrize("accountant, expected", [("pld", 2.62), ("rdp", 3.00)])
def test_epsilon_matches_the_published_cross_check(accountant, expected):
    assert compute_epsilon(SIGMA, Q, T, DELTA, accountant) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
def test_calibration_round_trips(accountant):
    eps = compute_epsilon(SIGMA, Q, T, DELTA, accountant)
    sigma = calibrate_noise_multiplier(eps, Q, T, DELTA, accountant)
    assert sigma == pytest.approx(SIGMA, rel=0.01)
    reached = compute_epsilon(sigma, Q, T, DELTA, accountant)
    assert reached <= eps * (1 + 1e-9)  # calibration never gives less privacy than asked
    assert reached == pytest.approx(eps, rel=0.01)


def test_calibration_without_sampling_matches_the_gaussian_mechanism():
    sigma = calibrate_noise_multiplier(3.0, 1.0, 1, DELTA, "pld")
    assert compute_epsilon(sigma, 1.0, 1, DELTA, "pld") == pytest.approx(3.0, rel=0.01)
    assert 1.3 < sigma < 1.5  # the exact Gaussian mechanism (Balle & Wang 2018) needs sigma ~ 1.39


def test_more_noise_means_smaller_epsilon_and_zero_noise_none():
    assert compute_epsilon(2.0, Q, T, DELTA) < compute_epsilon(1.0, Q, T, DELTA)
    assert compute_epsilon(0.0, Q, T, DELTA) == math.inf


@pytest.mark.parametrize(
    "args, message",
    [
        ((1.0, 0.0, 10, DELTA), "sample rate"),
        ((1.0, 1.5, 10, DELTA), "sample rate"),
        ((1.0, 0.1, 0, DELTA), "steps"),
        ((1.0, 0.1, 10, 1.0), "delta"),
        ((-1.0, 0.1, 10, DELTA), "noise multiplier"),
    ],
)
def test_bad_settings_are_user_errors(args, message):
    with pytest.raises(GradleakError, match=message):
        compute_epsilon(*args)


def test_unreachable_epsilon_is_a_user_error():
    with pytest.raises(GradleakError, match="noise_multiplier= directly"):
        calibrate_noise_multiplier(1000.0, 1.0, 1, DELTA, "rdp")


def test_settings_take_exactly_one_of_epsilon_and_noise_multiplier():
    with pytest.raises(GradleakError, match="give epsilon= .* or noise_multiplier="):
        DPSettings()
    with pytest.raises(GradleakError, match="both given"):
        DPSettings(epsilon=3.0, noise_multiplier=1.0)
    settings = DPSettings(noise_multiplier=SIGMA, sample_rate=Q, steps=T, delta=DELTA)
    assert settings.sigma == SIGMA
    assert settings.achieved_epsilon() == pytest.approx(2.62, rel=0.01)
    target = DPSettings(epsilon=2.62, sample_rate=Q, steps=T, delta=DELTA)
    assert target.sigma == pytest.approx(SIGMA, rel=0.01)


@pytest.mark.parametrize("accountant, opacus_name", [("rdp", "rdp"), ("pld", "prv")])
def test_agrees_with_opacus(accountant, opacus_name):
    accountants = pytest.importorskip("opacus.accountants", reason="opacus (the bench extra) is not installed")
    theirs = accountants.create_accountant(opacus_name)
    theirs.history = [(SIGMA, Q, T)]
    # Opacus's RDP uses other orders, its PRV accountant is a third method (PAPERS.md: 2.63); all within 1%.
    assert compute_epsilon(SIGMA, Q, T, DELTA, accountant) == pytest.approx(theirs.get_epsilon(DELTA), rel=0.01)


def test_past_the_pld_limit_the_rdp_bound_answers_quickly():
    from gradleak.defenses.accounting import PLD_LIMIT, account

    epsilon, used = account(0.1, 1.0, 100, DELTA, "pld")  # the PLD grid would take a minute here
    assert used == "rdp" and epsilon > PLD_LIMIT
    assert epsilon == compute_epsilon(0.1, 1.0, 100, DELTA, "rdp")
    assert account(SIGMA, Q, T, DELTA, "pld")[1] == "pld"
    sigma = calibrate_noise_multiplier(200.0, 1.0, 100, DELTA, "pld")
    assert compute_epsilon(sigma, 1.0, 100, DELTA, "pld") == pytest.approx(200.0, rel=0.01)


@pytest.mark.parametrize("target", [50.0, 80.0])
def test_large_targets_are_never_reported_above_themselves(target):
    # Around the PLD/RDP hand-over a calibrated sigma must be accounted no worse than its target.
    sigma = calibrate_noise_multiplier(target, 1.0, 1, DELTA, "pld")
    reached = compute_epsilon(sigma, 1.0, 1, DELTA, "pld")
    assert 0.9 * target < reached <= target * (1 + 1e-9)
