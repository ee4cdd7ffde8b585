"""Membership inference on an update or an aggregate: did this example (or client) take part?

The attacker holds a target direction ``g`` (the target's clipped gradient, or a client's
update) and projects what it sees onto it, ``s = <release, g> / ||g||``: for the Gaussian
mechanism that projection is the sufficient statistic, so the Neyman-Pearson optimal test is
a threshold on it (Nasr et al., "Adversary Instantiation", S&P 2021, Sec. 4). Shadow releases,
computed by the attacker with and without the target on data it controls, give the two
distributions of ``s``; the test is their likelihood ratio under Gaussian fits (Carlini et al.,
"Membership Inference Attacks From First Principles", S&P 2022, Eq. 4, the online LiRA), which
also covers aggregates where the other clients' updates are unknown (Ngo et al. 2024 view secure
aggregation as a local-DP mechanism and find it hides a high-dimensional update poorly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

VARIANCE_FLOOR = 1e-24  # a noiseless release has zero shadow variance; keep the log-likelihood finite


@dataclass(frozen=True)
class LikelihoodRatioTest:
    """Gaussian fits to the shadow statistics with (``in``) and without (``out``) the target."""

    mean_in: float
    var_in: float
    mean_out: float
    var_out: float

    @classmethod
    def fit(cls, shadow_in: np.ndarray, shadow_out: np.ndarray) -> "LikelihoodRatioTest":
        """Fit both Gaussians to shadow statistics (Carlini et al. 2022, Alg. 1)."""
        shadow_in, shadow_out = np.asarray(shadow_in, float), np.asarray(shadow_out, float)
        pooled = max(float(np.var(np.concatenate([shadow_in - shadow_in.mean(), shadow_out - shadow_out.mean()]))), VARIANCE_FLOOR)
        # A world without spread (no noise) takes the pooled variance, so the ratio stays a monotone test.
        var_in = max(float(np.var(shadow_in)), VARIANCE_FLOOR) if len(shadow_in) > 1 else pooled
        var_out = max(float(np.var(shadow_out)), VARIANCE_FLOOR) if len(shadow_out) > 1 else pooled
        return cls(float(shadow_in.mean()), var_in, float(shadow_out.mean()), var_out)

    def score(self, statistic: np.ndarray) -> np.ndarray:
        """log p(s | in) - log p(s | out); large means "took part"."""
        s = np.asarray(statistic, float)

        def log_normal(mean: float, var: float) -> np.ndarray:
            return -0.5 * (np.log(2 * np.pi * var) + (s - mean) ** 2 / var)

        return log_normal(self.mean_in, self.var_in) - log_normal(self.mean_out, self.var_out)


@dataclass(frozen=True)
class MembershipMetrics:
    """ROC AUC and membership advantage max_t (TPR - FPR) (Yeom et al., CSF 2018) of a test."""

    auc: float
    advantage: float


def membership_metrics(scores_in: np.ndarray, scores_out: np.ndarray) -> MembershipMetrics:
    """AUC and advantage of scores on releases with (``scores_in``) and without the target."""
    labels = np.concatenate([np.ones(len(scores_in)), np.zeros(len(scores_out))])
    scores = np.concatenate([scores_in, scores_out])
    fpr, tpr, _ = roc_curve(labels, scores)
    return MembershipMetrics(float(roc_auc_score(labels, scores)), float(np.max(tpr - fpr)))
