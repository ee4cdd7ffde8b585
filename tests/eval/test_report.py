"""Reports: the summary numbers, the Markdown, and the HTML rendered by a real headless browser."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import pytest

from gradleak.cli import main
from gradleak.eval.sweep.plan import load_config, plan
from gradleak.eval.sweep.execute import RESULTS, run_grid
from gradleak.eval.records import load_records
from gradleak.eval.report import write_report
from gradleak.eval.store import ResultStore
from gradleak.eval.summary import Stat, defense_verdicts, group_runs

HERE = Path(__file__).parent


def attack_record(
    key: str, defense: str, psnrs: list[float], epsilon: float | None = None, attack: str = "dlg"
) -> dict:
    return {
        "key": key, "kind": "attack", "seed": 0,
        "label": {"scenario": "faces/lenet-zhu", "attack": attack, "defense": defense},
        "metrics": {"per_image": [{"psnr": p, "ssim": 0.5, "mse": 0.01, "label_correct": True} for p in psnrs]},
        "epsilon": epsilon,
        "dp": [] if epsilon is None else [{"defense": defense.split(":")[0], "epsilon": epsilon, "delta": 1e-5}],
        "cost": {"attack_seconds": 1.0},
        "images": {"truth": [], "reconstruction": []},
    }


def test_summary_pools_images_and_counts_success_above_threshold():
    records = [attack_record("a", "none", [45.0, 15.0]), attack_record("b", "none", [25.0, math.inf])]
    (group,) = group_runs(records)
    assert group.psnr.n == 4 and group.psnr.mean == math.inf and group.psnr.median == 35.0
    assert group.success_rate(20.0) == 0.75
    assert group.success_rate(30.0) == 0.5
    assert Stat.of([1.0, 3.0]).format() == "2.0 ± 1.0"


def test_a_defense_verdict_takes_the_stronger_of_the_oblivious_and_the_adaptive_attack(tmp_path):
    adaptive = "idlg:adaptive=true"
    for order in ((0, 1), (1, 0)):  # whichever attack the grid ran first
        pair = [attack_record("o", "prune", [6.7, 8.0], attack="idlg"),
                attack_record("a", "prune", [31.0, 12.0], attack=adaptive)]
        records = [pair[i] for i in order] + [
            attack_record("q", "quantize", [25.0, 24.0], attack="idlg"),
            attack_record("qa", "quantize", [19.0, 23.0], attack=adaptive),
            attack_record("n", "none", [40.0], attack="idlg"),
        ]
        prune, quantize = defense_verdicts(group_runs(records))  # "none" is no defense to judge
        assert (prune.defense, prune.strongest.attack, prune.verdict) == ("prune", adaptive, "leaks")
        assert (quantize.strongest.attack, quantize.verdict) == ("idlg", "leaks")  # the oblivious one is stronger here
    held = defense_verdicts(group_runs([attack_record("o", "prune", [6.7], attack="idlg"),
                                        attack_record("a", "prune", [12.0], attack=adaptive)]))
    assert held[0].verdict == "holds" and held[0].strongest.attack == adaptive
    write_report(records, tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert f"| faces/lenet-zhu | prune | 2 | {adaptive} | 21.5 ± 9.5 | 50% | leaks |" in markdown


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A small real sweep (stand-in attack, real rounds and images) plus utility and cost records."""
    out = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(HERE))
        grid = load_config(None, {"attacks": ["test-grey"], "seeds": [0, 1], "plugins": ["harness_plugin"],
                                  "out": str(out), "device": "cpu"}, {"dataset": "photos"})
        run_grid(plan(grid), out)
    store = ResultStore(out / RESULTS)
    for eps, psnr in ((1.0, 9.0), (8.0, 14.0)):
        store.append(attack_record(f"dp{eps}", f"dp-sgd:epsilon={eps:g}", [psnr], epsilon=eps))
    for defense, eps, accuracy in (("none", None, 0.9), ("dp-fedavg:epsilon=1", 1.0, 0.7),
                                   ("dp-fedavg:epsilon=8", 8.0, 0.85)):
        store.append({"key": f"u{defense}", "kind": "utility", "accuracy": accuracy, "epsilon": eps,
                      "label": {"setting": "digits/mlp", "defense": defense, "mechanism": "dp-fedavg"},
                      "config": {"rounds": 10}})
    for n in (4, 8, 16):
        store.append({"key": f"s{n}", "kind": "secagg", "clients": n, "dim": 1000, "dropout": 0.0,
                      "client_bytes_sent": 4000 + 100 * n, "expansion": 1.0 + n / 100, "client_seconds": 0.01 * n,
                      "server_seconds": 0.02 * n, "correct": True})
    return out / RESULTS


def test_report_command_writes_markdown_and_html_with_every_section(results, tmp_path):
    assert main(["report", str(results), "--out", str(tmp_path / "report")]) == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    for heading in ("Attacks against defenses", "Reconstructions", "Privacy against utility", "Secure aggregation cost"):
        assert f"## {heading}" in markdown
    assert "| photos/lenet-zhu | test-grey | none | – | 2 |" in markdown
    assert "| digits/mlp | dp-fedavg:epsilon=1 | 1 | 1 | 70.0 | -20.0 | 10 |" in markdown
    for link in re.findall(r"\]\((figures/[^)]+)\)", markdown):
        assert (tmp_path / "report" / link).stat().st_size > 1000
    html = (tmp_path / "report" / "report.html").read_text()
    assert html.count('<img alt="') == 4  # the grid, PSNR vs ε, accuracy vs ε, secagg cost
    assert "src=\"file:" not in html and "figures/" not in html  # self-contained


# --- the browser test (the decoded_widths fixture is in conftest.py) ---


def test_report_renders_in_headless_chromium(results, tmp_path, decoded_widths):
    records = load_records([results])
    _, page = write_report(records, tmp_path / "report")
    widths = decoded_widths(page)
    assert len(widths) == page.read_text().count("<img ") == 4
    assert all(w > 100 for w in widths), widths

    # the check can fail: a corrupted embedded PNG decodes to width 0
    text = page.read_text()
    first = re.search(r"base64,([A-Za-z0-9+/=]+)", text).group(1)
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace(first, base64.b64encode(b"not a png" * 50).decode(), 1))
    assert decoded_widths(broken)[0] == 0
