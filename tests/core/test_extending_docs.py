"""docs/extending.md's example attack runs as written: it registers, builds from a spec and attacks a round."""

import re
import sys
from pathlib import Path

import torch

from gradleak.attacks import ATTACKS, build_attack
from gradleak.scenario import Scenario, build_round

DOC = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


def test_the_documented_attack_registers_and_reconstructs(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    (tmp_path / "doc_example_attack.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        if "grey" not in ATTACKS:
            __import__("doc_example_attack")
        round_ = build_round(Scenario(dataset="faces"))
        reconstruction = build_attack("grey:level=0.25").reconstruct(round_.view)
        assert torch.all(reconstruction.images == 0.25)
        assert reconstruction.labels.tolist() == round_.truth.labels.tolist()  # iDLG's rule on one image
    finally:
        sys.modules.pop("doc_example_attack", None)
        ATTACKS._entries.pop("grey", None)  # other tests walk every registered attack
