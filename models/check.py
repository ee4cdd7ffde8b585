"""Can gradient matching differentiate this model's gradient again?

Gradient-matching attacks minimise a distance between gradients, so they need the
gradient of the parameter gradient with respect to the input (a double backward). Some
operations only implement one backward pass; this check finds the module that breaks the
chain and names it.
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

    for name, module in model.named_modules():
        if not list(module.children()):
            module.register_forward_hook(remember(name))
    failure = _double_backward_error(model, torch.rand(2, *in_shape), torch.arange(2) % num_classes)
    if failure is None:
        return
    for name, module in model.named_modules():
        if name in inputs and _module_breaks(module, inputs[name]):
            raise GradleakError(
                f"module {name!r} ({type(module).__name__}) cannot be differentiated twice, which "
                f"gradient matching needs ({failure}); replace it with a twice-differentiable op"
            )
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


def _module_breaks(module: nn.Module, args: tuple) -> bool:
    args = tuple(a.detach().clone().requires_grad_(a.is_floating_point()) if torch.is_tensor(a) else a for a in args)
    try:
        out = module(*args)
        differentiable = [a for a in args if torch.is_tensor(a) and a.requires_grad]
        first = torch.autograd.grad(out.square().sum(), differentiable, create_graph=True)
        second = sum(g.square().sum() for g in first if g.requires_grad)
        if torch.is_tensor(second):
            torch.autograd.grad(second, differentiable, allow_unused=True)
    except (RuntimeError, NotImplementedError):
        return True
    return False
