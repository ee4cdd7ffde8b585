"""Membership inference on updates and aggregates: the likelihood-ratio test and its metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from gradleak.attacks.membership import LikelihoodRatioTest, membership_metrics
from gradleak.eval.audit import AuditConfig, audit


def test_metrics_match_the_gaussian_closed_forms():
    # N(1, 1) vs N(0, 1): AUC = Phi(1 / sqrt 2), best advantage = 2 Phi(1/2) - 1.
    rng = np.random.default_rng(0)
    m = membership_metrics(1 + rng.standard_normal(20_000), rng.standard_normal(20_000))
    assert m.auc == pytest.approx(stats.norm.cdf(1 / math.sqrt(2)), abs=0.01)
    assert m.advantage == pytest.approx(2 * stats.norm.cdf(0.5) - 1, abs=0.02)


def test_likelihood_ratio_orders_like_the_statistic_at_equal_variances():
    rng = np.random.default_rng(1)
    test = LikelihoodRatioTest.fit(2 + rng.standard_normal(500), rng.standard_normal(500))
    s = np.linspace(-3, 5, 50)
    assert np.all(np.diff(test.score(s)) > 0)


def test_membership_of_an_example_in_a_plain_update_is_certain():
    result = audit("none", AuditConfig(level="example", trials=40, canaries=0))
    assert result.auc == 1.0 and result.advantage == 1.0


def test_dp_bounds_membership_advantage():
    # (eps, delta)-DP caps TPR - FPR at (e^eps - 1 + 2 delta) / (e^eps + 1) (Kairouz et al. 2015): 0.76 at eps 2.
    result = audit("dp-sgd:epsilon=2", AuditConfig(trials=300, canaries=0))
    cap = (math.exp(2) - 1) / (math.exp(2) + 1)
    assert result.advantage < cap and result.auc < 0.8
