"""Shamir secret sharing: any t shares reconstruct; t - 1 shares say nothing."""

import itertools
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, chisquare

from gradleak.defenses.secagg import shamir
from gradleak.errors import GradleakError


@settings(max_examples=60, deadline=None)
@given(
    secret=st.integers(0, 2**256 - 1),
    n=st.integers(1, 25),
    data=st.data(),
)
def test_any_t_shares_reconstruct_the_secret(secret, n, data):
    t = data.draw(st.integers(1, n))
    points = data.draw(st.lists(st.integers(1, 10**6), min_size=n, max_size=n, unique=True))
    (shares,) = shamir.split([secret], t, points)
    pairs = list(zip(points, shares))
    subset = data.draw(st.permutations(pairs))[: data.draw(st.integers(t, n))]
    assert shamir.reconstruct(subset, t) == secret


def test_fewer_than_t_shares_do_not_give_the_secret():
    secret = random.getrandbits(256)
    (shares,) = shamir.split([secret], 5, [1, 2, 3, 4, 5, 6])
    with pytest.raises(GradleakError, match="need 5 shares"):
        shamir.reconstruct(list(zip([1, 2, 3, 4], shares)), 5)
    # Interpolating only 4 of them as if the threshold were 4 gives an unrelated value.
    assert shamir.reconstruct(list(zip([1, 2, 3, 4], shares)), 4) != secret


def test_several_secrets_are_shared_independently():
    secrets = [random.getrandbits(256) for _ in range(3)]
    points = [3, 9, 27, 81]
    shares = shamir.split(secrets, 3, points)
    for secret, row in zip(secrets, shares):
        assert shamir.reconstruct(list(zip(points, row))[1:], 3) == secret
    assert shares[0] != shares[1]


@pytest.mark.parametrize("prime,t", [(11, 3), (13, 2), (7, 4)])
def test_t_minus_1_shares_are_consistent_with_every_secret_exactly_once(prime, t):
    """Information-theoretic secrecy on a small field: for t - 1 observed shares, every candidate
    secret has exactly one polynomial of degree t - 1 through them, so all are equally likely.
    This is the algebra; that ``split`` really draws the coefficients at random is tested below."""
    (shares,) = shamir.split([5], t, list(range(1, t + 1)), prime=prime)
    observed = list(zip(range(1, t), shares[: t - 1]))
    consistent = {s: 0 for s in range(prime)}
    for coefficients in itertools.product(range(prime), repeat=t):  # a_0 (the secret), a_1, ...
        if all(sum(a * x**i for i, a in enumerate(coefficients)) % prime == y for x, y in observed):
            consistent[coefficients[0]] += 1
    assert set(consistent.values()) == {1}


def test_coefficients_cover_the_field_uniformly_enough():
    # Sharing 0 at x = 1 with t = 2 gives f(1) = a_1: uniform over GF(7).
    values = [shamir.split([0], 2, [1, 2], prime=7)[0][0] for _ in range(7000)]
    counts = [values.count(v) for v in range(7)]
    assert min(counts) > 800 and max(counts) < 1200


@pytest.mark.parametrize(
    "secrets,t,points,message",
    [([1], 3, [1, 2], "threshold"), ([1], 2, [1, 1], "distinct"), ([1], 2, [0, 1], "nonzero"),
     ([shamir.PRIME], 2, [1, 2], "does not fit")],
)
def test_bad_arguments_are_refused(secrets, t, points, message):
    with pytest.raises(GradleakError, match=message):
        shamir.split(secrets, t, points)


RUNS, SMALL_PRIME = 4000, 101  # ~40 draws per field element
ALPHA = 1e-6  # false-alarm rate of each statistical test (coefficients are fresh each run)


def _first_shares(secret: int, t: int) -> np.ndarray:
    """The t - 1 shares at x = 1, ..., t - 1 of ``secret`` over many fresh splits."""
    return np.array([shamir.split([secret], t, list(range(1, t + 1)), prime=SMALL_PRIME)[0][: t - 1]
                     for _ in range(RUNS)])


@pytest.mark.parametrize("t", [2, 3])
def test_t_minus_1_shares_of_a_fixed_secret_are_uniform_over_the_field(t):
    shares = _first_shares(42, t)
    for column in shares.T:
        assert chisquare(np.bincount(column, minlength=SMALL_PRIME)).pvalue > ALPHA
    assert np.mean(shares == 42) < 3 / SMALL_PRIME  # a share is the secret no more often than chance


def test_shares_of_two_secrets_are_indistinguishable():
    a, b = _first_shares(0, 3)[:, 0], _first_shares(77, 3)[:, 0]
    table = np.stack([np.bincount(a, minlength=SMALL_PRIME), np.bincount(b, minlength=SMALL_PRIME)])
    assert chi2_contingency(table).pvalue > ALPHA


def test_shares_in_the_real_field_never_repeat_or_equal_the_secret():
    secret = random.getrandbits(256)
    shares = [y for _ in range(20) for y in shamir.split([secret], 3, [1, 2, 3, 4, 5])[0]]
    assert secret not in shares and len(set(shares)) == len(shares)
    assert min(y.bit_length() for y in shares) > 480  # spread over GF(2^521 - 1), not near the 256-bit secret
