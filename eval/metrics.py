"""Leakage metrics: PSNR, SSIM, MSE, label accuracy, after Hungarian matching.

PSNR and SSIM are scikit-image's, on images in [0, 1] (``data_range=1``). Identical images
have PSNR = inf; :func:`format_db` prints it as ``inf`` and :func:`jsonable` writes it as the
string ``"inf"`` so JSON stays standard (``float("inf")`` reads it back).

A batch attack returns its images in any order, so :func:`match` pairs reconstructions with
the truth by the assignment of least total MSE (scipy's Hungarian solver) before scoring.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gradleak.threat import Reconstruction, Truth


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.detach().cpu().double().permute(1, 2, 0).numpy()


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean squared error between two images (C, H, W) in [0, 1]."""
    return float(((a.detach().cpu().double() - b.detach().cpu().double()) ** 2).mean())


def psnr(reconstruction: torch.Tensor, truth: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for one image (C, H, W) in [0, 1]; inf when identical."""
    if mse(reconstruction, truth) == 0.0:
        return math.inf
    return float(peak_signal_noise_ratio(_hwc(truth), _hwc(reconstruction), data_range=1.0))


def ssim(reconstruction: torch.Tensor, truth: torch.Tensor) -> float:
    """Structural similarity (scikit-image defaults: 7x7 uniform window) for one image in [0, 1]."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(structural_similarity(_hwc(truth), _hwc(reconstruction), data_range=1.0, channel_axis=2))


def label_accuracy(predicted: torch.Tensor | None, true: torch.Tensor) -> float:
    """Share of labels right, position by position (after matching); 0 when no labels were guessed."""
    if predicted is None or len(true) == 0:
        return 0.0
    return float((predicted.detach().cpu().long() == true.detach().cpu().long()).float().mean())


def match(reconstructed: torch.Tensor, truth: torch.Tensor) -> list[int]:
    """``order`` such that ``reconstructed[order[i]]`` is the best partner of ``truth[i]``.

    Minimum-total-MSE assignment (Hungarian). With more reconstructions than truths the
    unmatched ones are dropped; with fewer, some truths stay unmatched (``-1``).
    """
    a = reconstructed.detach().cpu().double().flatten(1)
    b = truth.detach().cpu().double().flatten(1)
    cost = torch.cdist(b, a).pow(2).numpy() / a.shape[1]
    rows, cols = linear_sum_assignment(cost)
    order = [-1] * len(b)
    for r, c in zip(rows, cols):
        order[r] = int(c)
    return order


@dataclass
class Scores:
    """Per-image scores after matching, and their batch means."""

    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    mse: list[float] = field(default_factory=list)
    label_correct: list[bool] = field(default_factory=list)
    order: list[int] = field(default_factory=list)

    @property
    def mean_psnr(self) -> float:
        return _mean(self.psnr)

    @property
    def mean_ssim(self) -> float:
        return _mean(self.ssim)

    @property
    def mean_mse(self) -> float:
        return _mean(self.mse)

    @property
    def label_accuracy(self) -> float:
        return _mean([float(c) for c in self.label_correct])

    def success_rate(self, threshold_db: float = 20.0) -> float:
        """Share of images reconstructed above ``threshold_db`` PSNR."""
        return _mean([float(p >= threshold_db) for p in self.psnr])

    def summary(self) -> dict[str, Any]:
        return {
            "psnr": self.mean_psnr,
            "ssim": self.mean_ssim,
            "mse": self.mean_mse,
            "label_accuracy": self.label_accuracy,
            "per_image": [
                {"psnr": p, "ssim": s, "mse": m, "label_correct": c, "matched": o}
                for p, s, m, c, o in zip(self.psnr, self.ssim, self.mse, self.label_correct, self.order)
            ],
        }


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def score(reconstruction: Reconstruction, truth: Truth) -> Scores:
    """Match a reconstruction to the truth, then score every truth image against its partner.

    A truth image left without a partner scores as a blank (all-grey) guess would, so missing
    reconstructions count against the attack instead of disappearing from the mean.
    """
    order = match(reconstruction.images, truth.images)
    scores = Scores(order=order)
    for index, partner in enumerate(order):
        target = truth.images[index]
        guess = reconstruction.images[partner] if partner >= 0 else torch.full_like(target, 0.5)
        scores.psnr.append(psnr(guess, target))
        scores.ssim.append(ssim(guess, target))
        scores.mse.append(mse(guess, target))
        guessed = reconstruction.labels is not None and partner >= 0
        scores.label_correct.append(bool(guessed and int(reconstruction.labels[partner]) == int(truth.labels[index])))
    return scores


def format_db(value: float) -> str:
    """PSNR for tables: one decimal, ``inf`` for a perfect copy."""
    return "inf" if value == math.inf else "nan" if math.isnan(value) else f"{value:.1f}"


def jsonable(value: Any) -> Any:
    """Replace non-finite floats (anywhere in nested lists/dicts) with the strings 'inf', '-inf', 'nan'."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
