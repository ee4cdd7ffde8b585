"""Shared helpers for attack tests: rounds built from scenarios, cached per process."""

import functools
import warnings

import pytest

from gradleak.scenario import Scenario, build_round


@functools.lru_cache(maxsize=64)
def cached_round(**fields):
    return build_round(Scenario(**fields))


@pytest.fixture
def make_round():
    def make(**fields):
        return cached_round(**fields)

    return make


@pytest.fixture(autouse=True)
def _quiet_onednn_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        yield
