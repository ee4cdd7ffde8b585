"""The layering is a tree: the shared gradient pieces sit below both clients and defenses."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

# (module, modules it must not pull in): importing a lower layer never loads a higher one.
LAYERS = [
    ("gradleak.gradients", ["gradleak.defenses", "gradleak.federated", "gradleak.servers"]),
    ("gradleak.servers", ["gradleak.federated", "gradleak.defenses"]),
    ("gradleak.defenses", ["gradleak.federated", "gradleak.servers"]),
    ("gradleak.federated", ["gradleak.scenario", "gradleak.attacks"]),
    # data -> model -> clients -> defenses -> server view -> attack -> metrics -> report, and the
    # library never drives its own command line
    ("gradleak.attacks", ["gradleak.scenario", "gradleak.eval", "gradleak.showcase", "gradleak.commands"]),
    ("gradleak.eval.metrics", ["gradleak.federated", "gradleak.attacks"]),
    ("gradleak.eval.report", ["gradleak.attacks", "gradleak.eval.sweep", "gradleak.showcase", "gradleak.commands"]),
    ("gradleak.eval.secagg_costs", ["gradleak.attacks", "gradleak.commands", "gradleak.cli"]),
    ("gradleak.eval.sweep.execute", ["gradleak.showcase", "gradleak.commands", "gradleak.cli"]),
    ("gradleak.showcase.demo", ["gradleak.commands", "gradleak.cli"]),
    ("gradleak.showcase.claims", ["gradleak.commands", "gradleak.cli"]),
]


@pytest.mark.parametrize("module,above", LAYERS)
def test_a_layer_imports_nothing_above_it(module, above):
    code = f"import sys, {module}; print(','.join(m for m in {above!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing {module} loaded {out}"


def test_benchmarks_call_the_library_not_the_commands():
    root = Path(__file__).resolve().parents[2] / "benchmarks"
    offenders = [p.name for p in root.glob("*.py") if re.search(r"gradleak\.(commands|cli)\b", p.read_text())]
    assert offenders == []
