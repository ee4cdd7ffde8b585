"""Shared test setup: one intra-op thread per worker (the suite runs with ``pytest -n 2`` on 2 cores)."""

import torch

torch.set_num_threads(1)
