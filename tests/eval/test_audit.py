"""DP audits: the bounds' statistics on exact Gaussian releases, then the real mechanisms' releases.

Goals: a correct mechanism's epsilon_lower never exceeds the accountant's epsilon; a planted bug
(a tenth of the noise, or no clipping) shows above it; secure aggregation without DP leaks as
much as the trials can show, and distributed DP brings it under its epsilon.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradleak.cli import main
from gradleak.defenses.accounting import calibrate_noise_multiplier
from gradleak.eval.audit import AuditConfig, audit
from gradleak.eval.audit_bounds import clopper_pearson, one_run_audit, one_run_p_value, two_world_bound

DELTA = 1e-5
SIGMA_EPS2 = calibrate_noise_multiplier(2.0, 1.0, 1, DELTA)  # one Gaussian release at epsilon 2


def test_clopper_pearson_matches_its_closed_forms():
    # With 0 or n successes the exact interval has a closed form: 1 - (alpha/2)^(1/n), (alpha/2)^(1/n).
    n, alpha = 50, 0.05
    assert clopper_pearson(0, n, alpha) == pytest.approx((0.0, 1 - (alpha / 2) ** (1 / n)), rel=1e-9)
    assert clopper_pearson(n, n, alpha) == pytest.approx(((alpha / 2) ** (1 / n), 1.0), rel=1e-9)
    low, high = clopper_pearson(25, 50, alpha)
    assert 0.35 < low < 0.5 < high < 0.65


def gaussian_scores(sigma: float, trials: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The optimal test's statistic for one Gaussian release of sensitivity 1: N(1, s^2) vs N(0, s^2)."""
    rng = np.random.default_rng(seed)
    return 1 + sigma * rng.standard_normal(trials), sigma * rng.standard_normal(trials)


def test_two_world_bound_stays_below_epsilon_and_flags_a_tenth_of_the_noise():
    correct = [two_world_bound(*gaussian_scores(SIGMA_EPS2, 2000, s), DELTA).epsilon_lower for s in range(20)]
    broken = [two_world_bound(*gaussian_scores(SIGMA_EPS2 / 10, 2000, s), DELTA).epsilon_lower for s in range(20)]
    assert max(correct) <= 2.0, correct
    assert sum(e > 2.0 for e in broken) >= 19, broken


def test_one_run_bound_matches_its_sanity_figures():
    # PAPERS.md: m = 1000 canaries, 200 guesses, sigma for epsilon 2 gives 0.56-0.75; sigma/10 gives 4.19.
    def bound(sigma: float, seed: int) -> float:
        rng = np.random.default_rng(seed)
        included = rng.random(1000) < 0.5
        return one_run_audit(included + sigma * rng.standard_normal(1000), included, 200, DELTA).epsilon_lower

    correct = [bound(SIGMA_EPS2, s) for s in range(20)]
    assert max(correct) <= 2.0 and 0.3 < np.median(correct) < 1.2, correct
    assert min(bound(SIGMA_EPS2 / 10, s) for s in range(20)) > 4.0


def test_one_run_p_value_is_a_probability_that_rises_with_epsilon():
    p = [one_run_p_value(1000, 200, 150, e, DELTA) for e in (0.0, 0.5, 1.0, 2.0)]
    assert all(0 <= x <= 1 for x in p) and p == sorted(p) and p[0] < 1e-3 < 0.5 < p[-1]


FAST = dict(trials=300, canaries=0)


@pytest.mark.parametrize("spec", ["dp-sgd:epsilon=2", "dp-fedavg:epsilon=2"])
def test_a_correct_mechanism_is_never_caught_above_its_epsilon(spec):
    for seed in range(3):
        result = audit(spec, AuditConfig(seed=seed, **FAST))
        assert result.epsilon_accountant == pytest.approx(2.0, abs=1e-3)
        assert result.epsilon_lower <= 2.0, (seed, result)


@pytest.mark.parametrize("spec", [
    "dp-sgd:epsilon=2,planted_bug=weak-noise", "dp-sgd:epsilon=2,clip=0.1,planted_bug=no-clip",
    "dp-fedavg:epsilon=2,planted_bug=weak-noise", "dp-fedavg:epsilon=2,planted_bug=no-clip",
])
def test_a_planted_bug_is_flagged(spec):
    for seed in range(2):
        result = audit(spec, AuditConfig(seed=seed, **FAST))
        assert result.epsilon_lower > 2.2, (seed, result)


def test_the_one_run_audit_of_dp_fedavg():
    correct = audit("dp-fedavg:epsilon=2", AuditConfig(trials=8, canaries=1000))
    broken = audit("dp-fedavg:epsilon=2,planted_bug=weak-noise", AuditConfig(trials=8, canaries=1000))
    assert correct.one_run_epsilon_lower <= 2.0 < broken.one_run_epsilon_lower


def test_secure_aggregation_without_dp_leaks_all_the_trials_can_show():
    result = audit("secagg", AuditConfig(cohort=8, trials=60, canaries=0))
    assert result.auc == 1.0 and result.epsilon_lower >= 0.9 * result.epsilon_cap


@pytest.mark.slow
def test_secure_aggregation_over_eight_leaks_and_distributed_dp_hides_it():
    leaky = audit("secagg", AuditConfig(cohort=8, trials=400))
    private = audit("dp-distributed:epsilon=3,clients=9 + secagg", AuditConfig(cohort=8, trials=400))
    assert leaky.epsilon_lower > 3.5 and private.epsilon_lower < 3.0


def test_cli_audit_json(capsys):
    assert main(["audit", "--defense", "dp-fedavg:epsilon=2", "--trials", "40", "--canaries", "100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"epsilon_lower", "epsilon_accountant", "confidence", "trials", "tpr", "fpr"} <= out.keys()
    assert out["trials"] == 80 and out["epsilon_lower"] <= out["epsilon_accountant"]
