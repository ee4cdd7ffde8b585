"""Specs on the command line and in TOML fill typed configs; mistakes name the valid choices."""

from dataclasses import dataclass
from typing import Annotated, Literal

import pytest

from gradleak.errors import GradleakError
from gradleak.registry import Registry
from gradleak.spec import Range, make_config, parse_spec


@dataclass(frozen=True)
class Config:
    epsilon: float = 8.0
    steps: int = 10
    secure: bool = False
    mode: Literal["rdp", "pld"] = "pld"
    layers: tuple[int, ...] = (1,)
    seed: int | None = None


def test_parse_and_fill():
    spec = parse_spec("dp-sgd:epsilon=3, steps=1e3,secure=yes,mode=rdp,layers=1/2/3,seed=none")
    assert spec.name == "dp-sgd"
    config = make_config(Config, spec.params, "defense 'dp-sgd'")
    assert config == Config(3.0, 1000, True, "rdp", (1, 2, 3), None)
    assert str(parse_spec("prune:ratio=0.9")) == "prune:ratio=0.9"


def test_typed_toml_values_pass_through():
    assert make_config(Config, {"epsilon": 1, "steps": 4, "secure": True}, "x") == Config(1.0, 4, True)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"eps": "3"}, "unknown key\\(s\\) eps for defense 'dp-sgd'; valid keys: epsilon, layers, mode, secure, seed, steps"),
        ({"steps": "2.5"}, "steps='2.5' for defense 'dp-sgd' is not a valid int"),
        ({"mode": "gdp"}, "mode='gdp' for defense 'dp-sgd'; choose one of: rdp, pld"),
        ({"secure": "maybe"}, "secure='maybe' for defense 'dp-sgd' is not a valid bool"),
    ],
)
def test_mistakes_are_named(params, message):
    with pytest.raises(GradleakError, match=message):
        make_config(Config, params, "defense 'dp-sgd'")


@pytest.mark.parametrize("text", ["", ":a=1", "prune:ratio", "prune:ratio=1,ratio=2"])
def test_malformed_specs(text):
    with pytest.raises(GradleakError):
        parse_spec(text)


def test_registry_lists_valid_names():
    registry = Registry("widget")
    registry.register("b")(1)
    registry.register("a")(2)
    assert registry.get("a") == 2 and registry.names() == ["a", "b"]
    with pytest.raises(GradleakError, match="unknown widget 'c'; choose one of: a, b"):
        registry.get("c")


@dataclass(frozen=True)
class Ranged:
    iterations: Annotated[int, Range(1, 100)] = 10
    ratio: Annotated[float, Range(0, 1, high_open=True)] = 0.5
    noise: float = 1.0


@pytest.mark.parametrize(
    "params, message",
    [
        ({"iterations": "0"}, "iterations='0' for x is out of range; give a whole number between 1 and 100"),
        ({"iterations": "1e9"}, "iterations='1e9' for x is out of range"),
        ({"ratio": "1"}, r"ratio='1' for x is out of range; give a finite number in \[0, 1\)"),
        ({"ratio": "nan"}, "ratio='nan' for x is out of range"),
        ({"noise": "inf"}, "noise='inf' for x is out of range; give a finite number"),
        ({"noise": float("nan")}, "noise=nan for x is out of range"),
    ],
)
def test_declared_ranges_and_non_finite_floats_are_refused(params, message):
    with pytest.raises(GradleakError, match=message):
        make_config(Ranged, params, "x")
    assert make_config(Ranged, {"iterations": "100", "ratio": "0"}, "x") == Ranged(100, 0.0)
