"""Improved Deep Leakage from Gradients.

Zhao, Mopuri, Bilen, "iDLG: Improved Deep Leakage from Gradients", 2020: read the label off
the last layer's gradient (:func:`gradleak.attacks.labels.idlg_labels`), then run DLG on the
image alone. For a batch the iDLG rule does not apply; ``auto`` then counts labels
(:func:`gradleak.attacks.labels.count_labels`).
"""

from __future__ import annotations

from dataclasses import dataclass

from gradleak.attacks import register
from gradleak.attacks.dlg import DLG


@register
class IDLG(DLG):
    name = "idlg"

    @dataclass(frozen=True)
    class Config(DLG.Config):
        labels: str = "auto"  # iDLG's rule for one image, label counts for a batch
