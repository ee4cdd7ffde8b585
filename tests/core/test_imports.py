"""The layering is a tree: the shared gradient pieces sit below both clients and defenses."""

import subprocess
import sys

import pytest

# (module, modules it must not pull in): importing a lower layer never loads a higher one.
LAYERS = [
    ("gradleak.gradients", ["gradleak.defenses", "gradleak.federated", "gradleak.servers"]),
    ("gradleak.servers", ["gradleak.federated", "gradleak.defenses"]),
    ("gradleak.defenses", ["gradleak.federated", "gradleak.servers"]),
    ("gradleak.federated", ["gradleak.scenario", "gradleak.attacks"]),
]


@pytest.mark.parametrize("module,above", LAYERS)
def test_a_layer_imports_nothing_above_it(module, above):
    code = f"import sys, {module}; print(','.join(m for m in {above!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing {module} loaded {out}"
