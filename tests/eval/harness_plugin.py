"""A stand-in attack for testing the harness's mechanics (workers, resuming, kills) quickly.

It is registered only by the tests (``--plugin harness_plugin``): it guesses a mid-grey image
and the label with the most negative last-layer bias gradient, after an optional pause that
makes a run last long enough to be killed in the middle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from gradleak.attacks import ATTACKS, Attack, register
from gradleak.threat import Reconstruction, ServerView


class GreyGuess(Attack):
    name = "test-grey"

    @dataclass(frozen=True)
    class Config:
        pause: float = 0.0  # seconds to wait before answering
        seed: int = 0

    def reconstruct(self, view: ServerView) -> Reconstruction:
        time.sleep(self.config.pause)
        images = torch.full((view.num_examples, *view.input_shape), 0.5)
        label = int(torch.argmin(view.update[-1]))
        labels = torch.full((view.num_examples,), label, dtype=torch.long)
        return Reconstruction(images, labels, history=[{"loss": 0.0}])


if GreyGuess.name not in ATTACKS:
    register(GreyGuess)
