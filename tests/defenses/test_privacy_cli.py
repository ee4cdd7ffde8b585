"""``gradleak privacy``: the accountant on the command line, as text and as JSON."""

import json

import pytest

from gradleak.cli import main

SETTINGS = ["--sample-rate", "0.125", "--steps", "24", "--delta", "1e-5"]


def run_json(capsys, *argv):
    assert main(["privacy", *argv, *SETTINGS, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("accountant, expected", [("pld", 2.62), ("rdp", 3.00)])
def test_epsilon_json(capsys, accountant, expected):
    result = run_json(capsys, "epsilon", "--noise-multiplier", "1.384", "--accountant", accountant)
    assert result["epsilon"] == pytest.approx(expected, rel=0.01)
    assert result["noise_multiplier"] == 1.384
    assert result["accountant"] == accountant


def test_noise_json_round_trips(capsys):
    result = run_json(capsys, "noise", "--epsilon", "2.62")
    assert result["noise_multiplier"] == pytest.approx(1.384, rel=0.01)
    assert result["epsilon"] <= 2.62
    assert result["accountant"] == "pld"


def test_text_output_names_the_settings(capsys):
    assert main(["privacy", "epsilon", "--noise-multiplier", "1.384", *SETTINGS]) == 0
    out = capsys.readouterr().out
    assert out.startswith("epsilon 2.6") and "24 step(s)" in out and "PLD" in out


def test_bad_input_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["privacy", "epsilon", "--noise-multiplier", "1", "--sample-rate", "3"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --sample-rate: '3' is out of range" in err and err.count("\n") == 1
