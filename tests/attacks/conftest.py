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


def pytest_collection_modifyitems(config, items):
    """Slow reproductions run only when asked for with ``-m slow`` (the marker in setup.cfg)."""
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow reproduction: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _quiet_onednn_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        yield
