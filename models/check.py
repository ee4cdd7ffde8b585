"""Can gradient matching differentiate this model's gradient again?

Gradient-matching attacks minimise a distance between gradients, so they need the gradient of
the parameter gradient with respect to the input (a double backward). An operation can break
that chain in two ways: loudly (its backward has no derivative and autograd raises) or silently
(its backward runs outside autograd, as ``@once_differentiable`` functions do, so the second-order
path is dropped and the attack optimises a wrong objective). This check probes every leaf module
for both and names the first that breaks.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn

from gradleak.errors import GradleakError


def check_twice_differentiable(model: nn.Module, in_shape: tuple[int, int, int], num_classes: int) -> None:
    """Raise :class:`GradleakError` naming the first module whose backward cannot be differentiated."""
    model = copy.deepcopy(model)  # the probe must not touch the caller's BatchNorm statistics
    inputs: dict[str, tuple] = {}

    def remember(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            inputs.setdefault(name, args)

        return hook

    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    for name, module in leaves:
        module.register_forward_hook(remember(name))
    device = next(model.parameters(), torch.empty(0)).device
    probe = torch.rand(2, *in_shape, device=device)
    failure = _double_backward_error(model, probe, torch.arange(2, device=device) % num_classes)
    for name, module in leaves:
        problem = _module_problem(module, inputs[name]) if name in inputs else None
        if problem:
            raise GradleakError(
                f"module {name!r} ({type(module).__name__}) cannot be differentiated twice, which "
                f"gradient matching needs ({problem}); replace it with a twice-differentiable op"
            )
    if failure:
        raise GradleakError(f"the model cannot be differentiated twice ({failure})")


def _double_backward_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str | None:
    params = [p for p in model.parameters() if p.requires_grad]
    x = x.clone().requires_grad_(True)
    try:
        loss = nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        matched = sum((g**2).sum() for g in grads if g is not None and g.requires_grad)
        if not torch.is_tensor(matched):
            return "no parameter gradient depends on the input"
        torch.autograd.grad(matched, x, allow_unused=True)
    except (RuntimeError, NotImplementedError) as exc:
        return str(exc).splitlines()[0]
    return None


def _module_problem(module: nn.Module, args: tuple) -> str | None:
    """Why ``module``'s vector-Jacobian product is not differentiable, or None when it is."""
    leaves = [a.detach().clone().requires_grad_(True) if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
    wrt = [a for a in leaves if torch.is_tensor(a) and a.requires_grad]
    wrt += [p for p in module.parameters(recurse=False) if p.requires_grad]
    try:
        # `* 1` gives in-place modules (ReLU(inplace=True)) a non-leaf tensor to overwrite.
        out = module(*(a * 1 if torch.is_tensor(a) and a.requires_grad else a for a in leaves))
        if not torch.is_tensor(out) or not out.requires_grad:
            return None
        v = torch.randn_like(out).requires_grad_(True)
        first = torch.autograd.grad(out, wrt, v, create_graph=True, allow_unused=True)
        if any(g is not None and not g.requires_grad for g in first):
            return "its backward runs outside autograd, so second-order terms are silently dropped"
        second = sum(g.square().sum() for g in first if g is not None)
        # d|J^T v|^2 / dv = 2 J J^T v is non-zero whenever the backward really depends on v;
        # autograd returning None here means the backward's own graph was cut.
        if torch.is_tensor(second) and torch.autograd.grad(second, [v, *wrt], allow_unused=True)[0] is None:
            return "its backward is opaque to autograd, so second-order terms are silently dropped"
    except (RuntimeError, NotImplementedError) as exc:
        return str(exc).splitlines()[0]
    return None
