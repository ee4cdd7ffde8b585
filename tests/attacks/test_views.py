"""Malformed views fail with a GradleakError that names the problem, before any optimisation."""

import dataclasses

import pytest
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from gradleak.attacks import build_attack
from gradleak.errors import GradleakError
from gradleak.threat import ServerView


class _OnceDifferentiableSquare(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class _Square(nn.Module):
    def forward(self, x):
        return _OnceDifferentiableSquare.apply(x)


def test_malformed_updates_are_refused(make_round):
    view = make_round(dataset="faces").view
    with pytest.raises(GradleakError, match="shape"):
        dataclasses.replace(view, update=(view.update[0][:1], *view.update[1:]))
    with pytest.raises(GradleakError, match="tensors but the model has"):
        dataclasses.replace(view, update=view.update[:-1])
    nan = view.update[0].clone()
    nan[0] = float("nan")
    with pytest.raises(GradleakError, match="NaN"):
        dataclasses.replace(view, update=(nan, *view.update[1:]))
    with pytest.raises(GradleakError, match="out of range"):
        dataclasses.replace(view, known_labels=torch.tensor([2]))
    zeros = dataclasses.replace(view, update=tuple(torch.zeros_like(u) for u in view.update))
    with pytest.raises(GradleakError, match="all zeros"):
        build_attack("dlg").reconstruct(zeros)


def test_attack_specific_requirements_are_checked(make_round):
    view = make_round(dataset="faces").view
    with pytest.raises(GradleakError, match="side information"):
        build_attack("idlg:labels=known").reconstruct(view)
    with pytest.raises(GradleakError, match="FedSGD gradient"):
        build_attack("fedavg").reconstruct(view)
    with pytest.raises(GradleakError, match="unknown key"):
        build_attack("dlg:steps=3")
    model = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 8), _Square(), nn.Linear(8, 2))
    params = [p for p in model.parameters()]
    x = torch.rand(1, 1, 32, 32)
    grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), torch.tensor([1])), params)
    broken = ServerView(model, view.normalization, (1, 32, 32), 2, tuple(g.detach() for g in grads), 1)
    with pytest.raises(GradleakError, match="cannot be differentiated twice"):
        build_attack("dlg").reconstruct(broken)
