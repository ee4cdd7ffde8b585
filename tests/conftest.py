"""Shared test setup: the numeric path is set here, for the whole run, never by the library.

One intra-op thread per worker (the suite runs with ``pytest -n 2`` on 2 cores), and oneDNN on
or off as ``--onednn`` says (default on), so CI can run the numeric tests on both CPU backends:
``pytest --onednn=off tests/attacks tests/defenses``. Also a fixed Hypothesis profile in CI and
an hour's timeout for slow reproductions.
"""

import os

import pytest
from hypothesis import settings

from gradleak.compute import Compute, parse_switch

# In CI (CI=true) Hypothesis draws the same examples every run, so a failure there reproduces here.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--onednn", default="on", choices=("on", "off"), help="oneDNN CPU convolutions (default on)")


def pytest_configure(config: pytest.Config) -> None:
    Compute(threads=1, onednn=parse_switch(config.getoption("--onednn"))).apply()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(3600))


@pytest.fixture
def onednn(request: pytest.FixtureRequest) -> str:
    """The run's ``--onednn`` value, for tests that call the CLI (whose own default is on)."""
    return request.config.getoption("--onednn")
