"""Shared test setup: the numeric path is set here, for the whole run, never by the library.

One intra-op thread per worker (the suite runs with ``pytest -n 2`` on 2 cores), and oneDNN on
or off as ``--onednn`` says (default on), so CI can run the numeric tests on both CPU backends:
``pytest --onednn=off tests/attacks tests/defenses``.
"""

import pytest

from gradleak.compute import Compute, parse_switch


def pytest_addoption(parser):
    parser.addoption("--onednn", default="on", choices=("on", "off"), help="oneDNN CPU convolutions (default on)")


def pytest_configure(config):
    Compute(threads=1, onednn=parse_switch(config.getoption("--onednn"))).apply()


@pytest.fixture
def onednn(request) -> str:
    """The run's ``--onednn`` value, for tests that call the CLI (whose own default is on)."""
    return request.config.getoption("--onednn")
