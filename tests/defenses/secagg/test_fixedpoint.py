"""Fixed-point encoding into Z_{2^b}: exact sums, unbiased rounding, and the bit budget."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradleak.defenses.secagg.fixedpoint import FixedPoint
from gradleak.errors import GradleakError

FAST = settings(max_examples=60, deadline=None)


@FAST
@given(
    values=st.lists(st.floats(-4, 4, allow_nan=False), min_size=1, max_size=40),
    clip=st.floats(0.1, 3),
    bits=st.sampled_from([12, 16, 32, 64]),
    seed=st.integers(0, 2**32),
)
def test_one_value_decodes_within_a_grid_step_of_its_clipped_self(values, clip, bits, seed):
    encoder = FixedPoint.fitting(1, clip, bits)
    x = np.array(values)
    decoded = encoder.decode(encoder.encode(x, np.random.default_rng(seed)))
    assert np.all(np.abs(decoded - np.clip(x, -clip, clip)) <= encoder.step * (1 + 1 / 16))


@FAST
@given(
    n=st.integers(1, 30),
    dim=st.integers(1, 20),
    bits=st.sampled_from([10, 16, 32, 64]),
    seed=st.integers(0, 2**32),
)
def test_the_ring_sum_of_weighted_encodings_is_the_exact_integer_sum(n, dim, bits, seed):
    rng = np.random.default_rng(seed)
    weights = rng.integers(1, 5, n)
    encoder = FixedPoint.fitting(int(weights.sum()), 1.0, bits)
    xs = rng.uniform(-1.5, 1.5, (n, dim))
    total = np.zeros(dim, dtype=encoder.dtype)
    exact = np.zeros(dim, dtype=object)
    for x, w in zip(xs, weights):
        rounding_seed = int(rng.integers(2**32))
        total += encoder.encode(x, np.random.default_rng(rounding_seed), int(w))
        exact += encoder.quantize(x, np.random.default_rng(rounding_seed)).astype(object) * int(w)
    encoder.reduce(total)
    assert encoder.from_ring(total).tolist() == exact.tolist()
    mean = encoder.decode(total, int(weights.sum()))
    reference = (np.clip(xs, -1, 1) * weights[:, None]).sum(0) / weights.sum()
    assert np.all(np.abs(mean - reference) <= encoder.step)


def test_stochastic_rounding_is_unbiased():
    encoder = FixedPoint(clip=1.0, value_bits=4)  # a coarse grid: step 1/7
    x = np.full(200_000, 0.3)  # 2.1 grid steps: rounds to 2 or 3 steps with probabilities 0.9, 0.1
    q = encoder.quantize(x, np.random.default_rng(0))
    assert set(np.unique(q)) == {2, 3}
    standard_error = np.sqrt(0.09 / len(x))
    assert abs(q.mean() - 2.1) < 5 * standard_error


def test_the_budget_check_refuses_a_sum_that_would_wrap():
    encoder = FixedPoint(clip=1.0, value_bits=16, bits=20)  # log2(n) + 16 <= 20 allows n <= 16
    encoder.check_budget(16)
    with pytest.raises(GradleakError, match="wrap"):
        encoder.check_budget(17)
    # ...and it is right to: 17 clients at the top of the range do wrap and decode as negative.
    top = np.ones(1)
    total = sum(encoder.encode(top, np.random.default_rng(0)) for _ in range(17))
    assert encoder.decode(encoder.reduce(total), 17)[0] < 0


def test_fitting_picks_the_most_value_bits_that_fit():
    for total_weight in (1, 2, 3, 1000, 2**20):
        encoder = FixedPoint.fitting(total_weight, 1.0, 32)
        encoder.check_budget(total_weight)
        with pytest.raises(GradleakError):
            FixedPoint(1.0, encoder.value_bits + 1, 32).check_budget(total_weight)
    with pytest.raises(GradleakError, match="raise bits"):
        FixedPoint.fitting(2**20, 1.0, bits=16)


def test_headroom_reserves_room_for_added_noise():
    encoder = FixedPoint.fitting(10, 1.0, 32, headroom=2**30)
    encoder.check_budget(10, headroom=2**30)
    assert encoder.value_bits < FixedPoint.fitting(10, 1.0, 32).value_bits


@pytest.mark.parametrize("kwargs", [dict(clip=0.0, value_bits=8), dict(clip=1.0, value_bits=40, bits=32),
                                    dict(clip=1.0, value_bits=8, bits=65), dict(clip=float("nan"), value_bits=8)])
def test_invalid_settings_are_refused(kwargs):
    with pytest.raises(GradleakError):
        FixedPoint(**kwargs)


def test_nan_is_refused():
    with pytest.raises(GradleakError, match="NaN"):
        FixedPoint(1.0, 8).encode(np.array([np.nan]), np.random.default_rng(0))


@pytest.mark.parametrize("clip", [0.7, 0.1, 3.3])
def test_quantize_stays_on_the_grid_at_the_clip_edge_with_48_value_bits(clip):
    # c * (L / c) rounds above L for ~1.6% of values at clip 0.7; SR must still never give L + 1.
    encoder = FixedPoint(clip=clip, value_bits=48, bits=64)
    edge = np.concatenate([np.full(20_000, clip), np.full(20_000, -clip), np.full(2_000, 5 * clip),
                           np.nextafter(np.full(2_000, clip), 0), np.random.default_rng(0).uniform(-clip, clip, 4_000)])
    q = encoder.quantize(edge, np.random.default_rng(1))
    assert np.abs(q).max() == encoder.levels  # reached, never passed
    assert (q[:20_000] >= encoder.levels - 1).all() and (q[20_000:40_000] <= 1 - encoder.levels).all()
