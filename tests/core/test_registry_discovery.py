"""A new attack, defense or server file registers itself: no import line in a package __init__."""

import sys
import textwrap

from gradleak.attacks import ATTACKS
from gradleak.defenses import DEFENSES
from gradleak.servers import SERVERS


def test_a_new_module_in_a_package_is_found_and_registers(tmp_path, monkeypatch):
    package = tmp_path / "plugpkg"
    (package / "deeper").mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent("""
        from gradleak.registry import Registry, discover
        THINGS = Registry("thing")
        discover(__name__, __path__)
    """))
    (package / "added.py").write_text("from plugpkg import THINGS\nTHINGS.register('added')(object)\n")
    (package / "deeper" / "__init__.py").write_text("")
    (package / "deeper" / "nested.py").write_text("from plugpkg import THINGS\nTHINGS.register('nested')(object)\n")
    (package / "_private.py").write_text("raise RuntimeError('private modules are not imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import plugpkg

        assert plugpkg.THINGS.names() == ["added", "nested"]
    finally:
        for name in [n for n in sys.modules if n == "plugpkg" or n.startswith("plugpkg.")]:
            del sys.modules[name]


def test_every_shipped_kind_is_registered_without_being_imported_by_name():
    assert {"dlg", "idlg", "ig", "rgap", "analytic", "fedavg", "gradinversion"} <= set(ATTACKS.names())
    assert {"secagg", "dp-sgd", "dp-fedavg", "dp-distributed", "prune", "quantize", "soteria"} <= set(DEFENSES.names())
    assert {"honest", "inconsistent", "imprint", "trap"} <= set(SERVERS.names())
