"""Bad input on every path ends in one line naming the bad value and exit 2, never a traceback.

The numeric options are discovered from the argparse parsers and the numeric fields from the
registries, so an option or field added later is probed too. Only values the declared range
refuses are run (they must fail while parsing, before any work); a value the range accepts
is not run here, because it may start a long computation.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import typing

import pytest

from gradleak.attacks import ATTACKS, build_attack
from gradleak.cli import build_parser, main
from gradleak.defenses import DEFENSES, build_defense
from gradleak.errors import GradleakError
from gradleak.models import MODELS, build
from gradleak.models.__init__ import _options_class
from gradleak.spec import Range, convert

PROBES = ("0", "-1", "nan", "inf", "1e30", "-1e30")
NUMBERS = (int, float)


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(argv prefix, parser) for every (sub)command that has no further subcommands."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _commands(sub, path + (name,))


def _numeric_hint(action: argparse.Action):
    """The number type an option converts to, its declared range, or None for a non-numeric option."""
    hint = getattr(action.type, "hint", None)
    if action.type in NUMBERS:
        return action.type, None
    if typing.get_origin(hint) is typing.Annotated:
        base, *metadata = typing.get_args(hint)
        if base in NUMBERS:
            return base, next((m for m in metadata if isinstance(m, Range)), None)
    return None


def _options():
    for path, parser in _commands(build_parser()):
        for action in parser._actions:
            if action.option_strings and _numeric_hint(action) is not None:
                yield path, action


OPTIONS = [pytest.param(path, action, id=" ".join(path) + " " + action.option_strings[-1]) for path, action in _options()]
# What a command needs besides the probed option to get past parsing.
REQUIRED = {
    ("secagg",): ["--clients", "3", "--dim", "4"],
    ("report",): ["results.jsonl", "--out", "report"],
    ("privacy", "epsilon"): ["--noise-multiplier", "1"],
    ("privacy", "noise"): ["--epsilon", "1"],
}


def _refused(kind: type, bounds: Range | None, text: str) -> bool:
    try:
        convert(text, typing.Annotated[kind, bounds] if bounds else kind)
    except GradleakError:
        return True
    return False


def test_every_numeric_option_declares_a_range():
    unbounded = [
        f"{' '.join(path)} {action.option_strings[-1]}"
        for path, action in _options()
        if _numeric_hint(action)[1] is None or _numeric_hint(action)[1].high is None and _numeric_hint(action)[0] is int
    ]
    assert len(OPTIONS) > 40 and unbounded == []


@pytest.mark.parametrize("path, action", OPTIONS)
def test_numeric_options_refuse_bad_values_on_one_line(path, action, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results.jsonl").write_text("")
    kind, bounds = _numeric_hint(action)
    flag = action.option_strings[-1]
    refused = [text for text in PROBES if _refused(kind, bounds, text)]
    # a float may be as large as its meaning allows; a count must have a limit
    assert {"nan", "inf"} <= set(refused) and (kind is float or "1e30" in refused), f"{flag} accepts {kind.__name__} {PROBES}"
    for text in refused:
        argv = [*path, *REQUIRED.get(path, []), flag, text]
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2, argv
        assert err.count("\n") == 1 and flag in err and "Traceback" not in err, err


def _config_classes():
    for name in ATTACKS.names():
        yield f"attack {name}", ATTACKS.get(name).Config, lambda spec: build_attack(spec)
    for name in DEFENSES.names():
        yield f"defense {name}", DEFENSES.get(name).Config, build_defense
    for name in MODELS.names():
        yield f"model {name}", _options_class(MODELS.get(name)), lambda spec: build(spec, (3, 8, 8), 10)


def _numeric_fields():
    for label, cls, builder in _config_classes():
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            leaf = _leaf(hints[f.name])
            if leaf is not None:
                yield pytest.param(label, builder, f.name, leaf, id=f"{label}:{f.name}")


def _leaf(hint):
    """(number type, Range or None) of a numeric field, looking through Optional, tuples and Annotated."""
    bounds = None
    while True:
        origin = typing.get_origin(hint)
        if origin is typing.Annotated:
            hint, *metadata = typing.get_args(hint)
            bounds = next((m for m in metadata if isinstance(m, Range)), bounds)
        elif origin in (typing.Union, __import__("types").UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        elif origin is tuple:
            hint = typing.get_args(hint)[0]
        else:
            return (hint, bounds) if hint in NUMBERS else None


FIELDS = list(_numeric_fields())


def test_every_numeric_config_field_declares_a_bounded_range():
    unbounded = [p.id for p in FIELDS if p.values[3][1] is None or p.values[3][0] is int and p.values[3][1].high is None]
    assert len(FIELDS) > 40 and unbounded == []


@pytest.mark.parametrize("label, builder, key, leaf", FIELDS)
def test_config_fields_refuse_bad_values(label, builder, key, leaf):
    kind, bounds = leaf
    name = label.split(" ", 1)[1]
    for text in PROBES:
        if not _refused(kind, bounds, text):
            continue
        with pytest.raises(GradleakError) as error:
            builder(f"{name}:{key}={text}")
        assert f"{key}={text!r}" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "spec", ["dlg:iterations=0", "dlg:iterations=-5", "dlg:restarts=0", "ig:restarts=0", "idlg:iterations=0"]
)
def test_the_reported_attack_specs_exit_2_before_any_work(spec, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["attack", "--attack", spec]) == 2
    err = capsys.readouterr().err
    key, value = spec.split(":")[1].split("=")
    assert err.count("\n") == 1 and f"{key}='{value}'" in err and "between 1 and" in err


def test_iterations_flag_is_checked_by_the_attack_range(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["attack", "--attack", "dlg", "--iterations", "0"]) == 2
    assert "iterations=0 for attack 'dlg'" in capsys.readouterr().err


def test_unwritable_out_exits_2_before_the_attack(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_:
        main(["attack", "--out", str(blocker / "out")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "--out" in err and "is a file" in err


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["attack", "--data-root", "{missing}", "--dataset", "cifar10"], "--data-root"),
        (["attack", "--image", "{missing}"], "--image"),
        (["evaluate", "--config", "{missing}"], "--config"),
        (["report", "{missing}", "--out", "r"], "RESULTS.jsonl"),
        (["claims", "--out", "{file}/claims.md"], "--out"),
        (["demo", "--out", "{file}"], "--out"),
        (["utility", "--out", "{file}/u"], "--out"),
    ],
)
def test_missing_inputs_and_unwritable_outputs_exit_2(argv, flag, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("")
    paths = {"missing": str(tmp_path / "missing"), "file": str(tmp_path / "file")}
    with pytest.raises(SystemExit) as exit_:
        main([a.format(**paths) for a in argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and flag in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["secagg", "--clients", "3", "--dim", "nan"], "--dim"),
    ],
)
def test_a_real_process_prints_one_line_and_exits_2(argv, words, tmp_path):
    done = subprocess.run([sys.executable, "-m", "gradleak", *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
