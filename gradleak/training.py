"""Ordinary training, for experiments on networks that are not at their random initialisation.

Gradient inversion behaves differently on trained networks (Geiping et al. 2020; Huang et al.
2021 evaluate after 1-2 epochs), so scenarios can train the global model first. This is plain
centralised mini-batch SGD with momentum on the dataset, seeded and deterministic.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from gradleak.data import ImageDataset
from gradleak.federated import loss_fn
from gradleak.progress import progress


def train(
    model: nn.Module,
    dataset: ImageDataset,
    epochs: float,
    indices: Sequence[int] | None = None,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    seed: int = 0,
) -> nn.Module:
    """Train ``model`` in place for ``epochs`` (may be fractional) passes over ``indices``."""
    if epochs <= 0:
        return model
    device = next(model.parameters()).device
    pool = torch.as_tensor(list(indices) if indices is not None else range(len(dataset)))
    generator = torch.Generator().manual_seed(seed)
    steps = math.ceil(epochs * len(pool) / batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum)
    model.train()
    order = pool[torch.randperm(len(pool), generator=generator)]
    cursor = 0
    for _ in progress(range(steps), desc=f"training {epochs:g} epoch(s)"):
        if cursor + batch_size > len(order):
            order, cursor = pool[torch.randperm(len(pool), generator=generator)], 0
        images, labels = dataset.get(order[cursor : cursor + batch_size].tolist())
        cursor += batch_size
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(dataset.normalization.normalize(images.to(device))), labels.to(device)).backward()
        optimizer.step()
    for p in model.parameters():
        p.grad = None
    return model


@torch.no_grad()
def accuracy(model: nn.Module, dataset: ImageDataset, indices: Sequence[int] | None = None, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on ``indices`` of ``dataset``."""
    device = next(model.parameters()).device
    pool = list(indices) if indices is not None else list(range(len(dataset)))
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(pool), batch_size):
        images, labels = dataset.get(pool[start : start + batch_size])
        logits = model(dataset.normalization.normalize(images.to(device)))
        correct += int((logits.argmax(1).cpu() == labels).sum())
    model.train(was_training)
    return correct / max(1, len(pool))
