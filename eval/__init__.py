"""Scoring and reporting: the only place that holds both a reconstruction and the truth."""

from gradleak.eval.metrics import Scores, format_db, jsonable, label_accuracy, match, mse, psnr, score, ssim

__all__ = ["Scores", "format_db", "jsonable", "label_accuracy", "match", "mse", "psnr", "score", "ssim"]
