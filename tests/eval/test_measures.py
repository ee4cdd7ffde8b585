"""Audits and property inference land in results.jsonl beside attack runs, are reused when
measured again, and the report shows them: empirical ε beside the accountant's, and AUC."""

from __future__ import annotations

import json

from gradleak.cli import main
from gradleak.eval.records import load_records
from gradleak.eval.report import build_sections
from gradleak.eval.store import read_records

AUDIT = ["audit", "--defense", "dp-sgd:epsilon=2", "--trials", "40", "--canaries", "0"]
PROPERTY = ["property", "--shadows", "16", "--trials", "16", "--trees", "10"]


def test_audits_and_property_inference_are_recorded_once_and_reported(tmp_path, capsys):
    assert main(["--quiet", *AUDIT, "--out", str(tmp_path), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["--quiet", *AUDIT, "--out", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == first  # reused, not measured again
    assert main(["--quiet", *PROPERTY, "--out", str(tmp_path)]) == 0
    records = read_records(tmp_path / "results.jsonl")
    assert [r["kind"] for r in records] == ["audit", "property"]
    assert records[0]["epsilon_lower"] <= records[0]["epsilon_accountant"]

    (section,) = [s for s in build_sections(load_records([tmp_path / "results.jsonl"]))
                  if s.title == "Membership, properties and empirical ε"]
    assert "| dp-sgd:epsilon=2 | example | 2 |" in section.text
    assert "| digits | none | 1 |" in section.text
    assert [name for name, _, _ in section.figures] == ["epsilon-audit.png"]


def test_a_report_without_such_records_says_how_to_get_them():
    (section,) = [s for s in build_sections([]) if s.title == "Membership, properties and empirical ε"]
    assert "gradleak audit --out" in section.text and not section.figures
