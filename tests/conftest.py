"""Shared test setup: one intra-op thread per worker (the suite runs with ``pytest -n 2`` on 2 cores),
a chosen convolution backend (``--onednn=off`` runs everything on ATen's own kernels), a fixed
Hypothesis profile in CI, and an hour's timeout for slow reproductions."""

import os

import pytest
import torch
from hypothesis import settings

torch.set_num_threads(1)

# In CI (CI=true) Hypothesis draws the same examples every run, so a failure there reproduces here.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--onednn", choices=("on", "off"), default="on",
                     help="run the whole session with oneDNN (mkldnn) kernels on or off")


def pytest_configure(config: pytest.Config) -> None:
    # Tests may set the process-wide backend; the library never does.
    torch.backends.mkldnn.enabled = config.getoption("--onednn") == "on"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(3600))
