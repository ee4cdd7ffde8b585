"""Empirical lower bounds on epsilon from a distinguishing attack's outcomes.

Two-world audit (Jagielski, Ullman, Oprea, "Auditing Differentially Private Machine Learning: How
Private is Private SGD?", NeurIPS 2020, Sec. 4; Nasr, Song, Thakurta, Papernot, Carlini,
"Adversary Instantiation", S&P 2021, Sec. 3): an (epsilon, delta)-DP mechanism run on neighbours
D' (with the canary) and D (without) bounds any test's rates by ``TPR <= e^eps FPR + delta`` and
``TNR <= e^eps FNR + delta``. With Clopper-Pearson intervals at confidence 1 - alpha for both
rates, ``eps_lower = max(ln((TPR_low - delta) / FPR_high), ln((TNR_low - delta) / FNR_high))``
holds with probability at least 1 - alpha. The threshold is chosen on one half of the trials
and the rates counted on the other, so the confidence is not spent on the choice.

One-run audit (Steinke, Nasr, Jagielski, "Privacy Auditing with One (1) Training Run", NeurIPS
2023): m canaries each included with probability 1/2; the auditor guesses r of them, v correctly.
For an (eps, delta)-DP mechanism (their Thm. 5.2, computed as in their Appendix D)
``P[V >= v] <= P[Bin(r, q) >= v] + 2 m delta max_{1<=i<=v} P[v - i <= Bin(r, q) < v] / i``,
``q = e^eps / (1 + e^eps)``; eps_lower is the largest eps this p-value rejects at level beta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from gradleak.errors import GradleakError

EPSILON_CEILING = 50.0  # one-run search range: e^50 is past any count of guesses here


def clopper_pearson(successes, trials, alpha: float):
    """Exact two-sided (1 - alpha) interval for a binomial rate (Clopper, Pearson 1934), via the beta
    quantiles; elementwise over arrays of counts."""
    k, n = np.asarray(successes, float), np.asarray(trials, float)
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise GradleakError(f"need 0 <= successes <= trials and trials >= 1, not {successes} of {trials}")
    with np.errstate(invalid="ignore"):
        low = np.where(k == 0, 0.0, stats.beta.ppf(alpha / 2, np.maximum(k, 1), n - k + 1))
        high = np.where(k == n, 1.0, stats.beta.ppf(1 - alpha / 2, k + 1, np.maximum(n - k, 1)))
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def _log_ratio(numerator, denominator):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(numerator > 0, np.maximum(0.0, np.log(np.maximum(numerator, 1e-300) / denominator)), 0.0)


@dataclass(frozen=True)
class TwoWorldBound:
    """A two-world audit's outcome: eps_lower, and the rates at the chosen threshold."""

    epsilon_lower: float
    tpr: float
    fpr: float
    threshold: float
    trials: int  # releases counted per world (the held-out half)
    confidence: float
    epsilon_cap: float  # the largest eps_lower these many trials can show (a perfect test)


def rates_bound(tp, fp, n_in: int, n_out: int, delta: float, alpha: float):
    """eps_lower from counts: TP of n_in releases on D', FP of n_out on D (Jagielski et al. 2020, Alg. 2);
    elementwise over arrays of counts."""
    # Two intervals (TP's and FP's; FNR's is 1 - TPR's) at alpha / 2 per side hold together with probability >= 1 - alpha.
    tpr_low, fnr_high = (np.asarray(v) for v in clopper_pearson(tp, n_in, alpha))
    fnr_high = 1 - tpr_low
    fpr_low, fpr_high = (np.asarray(v) for v in clopper_pearson(fp, n_out, alpha))
    tnr_low = 1 - fpr_high
    bound = np.maximum(_log_ratio(tpr_low - delta, fpr_high), _log_ratio(tnr_low - delta, fnr_high))
    return float(bound) if bound.ndim == 0 else bound


def best_threshold(scores_in: np.ndarray, scores_out: np.ndarray, delta: float, alpha: float) -> float:
    """The threshold ``score >= t`` (guess "in") with the largest eps_lower on these scores."""
    candidates = np.unique(np.concatenate([scores_in, scores_out]))
    tp = len(scores_in) - np.searchsorted(np.sort(scores_in), candidates, side="left")
    fp = len(scores_out) - np.searchsorted(np.sort(scores_out), candidates, side="left")
    return float(candidates[int(np.argmax(rates_bound(tp, fp, len(scores_in), len(scores_out), delta, alpha)))])


def two_world_bound(scores_in: np.ndarray, scores_out: np.ndarray, delta: float, confidence: float = 0.95) -> TwoWorldBound:
    """eps_lower from a test's scores on releases with (``scores_in``) and without the canary.

    The first half of each array picks the threshold, the second half is counted.
    """
    scores_in, scores_out = np.asarray(scores_in, float), np.asarray(scores_out, float)
    if min(len(scores_in), len(scores_out)) < 4:
        raise GradleakError(f"an audit needs at least 4 releases per world, not {len(scores_in)} and {len(scores_out)}")
    alpha = 1 - confidence
    half_in, half_out = len(scores_in) // 2, len(scores_out) // 2
    t = best_threshold(scores_in[:half_in], scores_out[:half_out], delta, alpha)
    held_in, held_out = scores_in[half_in:], scores_out[half_out:]
    tp, fp = int((held_in >= t).sum()), int((held_out >= t).sum())
    return TwoWorldBound(
        epsilon_lower=rates_bound(tp, fp, len(held_in), len(held_out), delta, alpha),
        tpr=tp / len(held_in),
        fpr=fp / len(held_out),
        threshold=t,
        trials=len(held_in) + len(held_out),
        confidence=confidence,
        epsilon_cap=rates_bound(len(held_in), 0, len(held_in), len(held_out), delta, alpha),
    )


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[at least v of r guesses correct] under (eps, delta)-DP (Steinke et al. 2023, Thm. 5.2)."""
    if not 0 <= v <= r <= m:
        raise GradleakError(f"need 0 <= correct <= guesses <= canaries, not {v}, {r}, {m}")
    q = 1 / (1 + math.exp(-epsilon))
    tail = float(stats.binom.sf(v - 1, r, q))
    if delta == 0 or v == 0:
        return min(1.0, tail)
    # P[v - i <= Bin(r, q) < v] for i = 1..v, divided by i.
    below = np.cumsum(stats.binom.pmf(np.arange(v - 1, -1, -1), r, q))
    slack = float(np.max(below / np.arange(1, v + 1)))
    return min(1.0, tail + 2 * m * delta * slack)


def one_run_bound(m: int, r: int, v: int, delta: float, confidence: float = 0.95) -> float:
    """The largest eps whose p-value for ``v`` correct of ``r`` guesses is below 1 - confidence (0 if none)."""
    beta = 1 - confidence
    if one_run_p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    if one_run_p_value(m, r, v, EPSILON_CEILING, delta) < beta:
        return EPSILON_CEILING
    return float(optimize.brentq(lambda e: one_run_p_value(m, r, v, e, delta) - beta, 0.0, EPSILON_CEILING, xtol=1e-6))


@dataclass(frozen=True)
class OneRunBound:
    """A one-run audit's outcome over m canaries."""

    epsilon_lower: float
    canaries: int
    guesses: int
    correct: int
    confidence: float


def one_run_audit(scores: np.ndarray, included: np.ndarray, guesses: int, delta: float, confidence: float = 0.95) -> OneRunBound:
    """Guess "in" for the top ``guesses / 2`` scores and "out" for the bottom ``guesses / 2`` (Steinke et
    al. 2023, Alg. 1 with k+ = k-), count the correct guesses, and bound eps."""
    scores, included = np.asarray(scores, float), np.asarray(included, bool)
    m = len(scores)
    k = min(guesses // 2, m // 2)
    if k < 1:
        raise GradleakError(f"a one-run audit needs at least 2 guesses over at least 2 canaries, not {guesses} over {m}")
    order = np.argsort(scores)
    correct = int(included[order[-k:]].sum() + (~included[order[:k]]).sum())
    return OneRunBound(one_run_bound(m, 2 * k, correct, delta, confidence), m, 2 * k, correct, confidence)
