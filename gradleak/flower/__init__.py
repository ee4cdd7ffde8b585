"""gradleak inside Flower (``pip install 'gradleak[flower]'``): defenses as client Mods, curious and
malicious servers as Strategies, and a network-free grid to run them in one process. See docs/flower.md."""

from __future__ import annotations

from gradleak.errors import GradleakError

FLOWER_EXTRA = "pip install 'gradleak[flower]'"

try:
    import flwr  # noqa: F401
except ImportError:
    raise GradleakError(f"gradleak.flower needs Flower, which is not installed: {FLOWER_EXTRA}") from None

from gradleak.flower.grid import InProcessGrid  # noqa: E402
from gradleak.flower.malicious import InconsistentLegacyFedAvg  # noqa: E402
from gradleak.flower.mods import dead_layer_mod, defense_mod, vet_mod  # noqa: E402
from gradleak.flower.strategy import CuriousFedAvg, CuriousLegacyFedAvg, CuriousServer  # noqa: E402

__all__ = ["CuriousFedAvg", "CuriousLegacyFedAvg", "CuriousServer", "InProcessGrid", "InconsistentLegacyFedAvg",
           "dead_layer_mod", "defense_mod", "vet_mod"]
