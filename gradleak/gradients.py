"""The pieces clients, defenses and attackers share: the loss, parameter naming, a batch gradient.

A leaf module (it imports only torch): :mod:`gradleak.federated` and :mod:`gradleak.defenses`
both build on it, so neither needs the other to compute a gradient. The loss is defined once so
a client and an attacker modelling it can never disagree (a known pitfall is a client using
``0.5 * CE`` while the attacker matches ``CE``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

Params = dict[str, torch.Tensor]
Update = tuple[torch.Tensor, ...]


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the batch; ``targets`` are class indices or probability rows."""
    return F.cross_entropy(logits, targets)


def trainable_names(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def batch_gradient(
    model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, create_graph: bool = False
) -> Update:
    """d loss_fn(model(x), y) / d params, for the trainable parameters in ``model.parameters()`` order.

    With ``create_graph=True`` the result stays differentiable with respect to ``x`` (and ``y``),
    which is what gradient matching optimises through.
    """
    names = trainable_names(model)
    if not create_graph:
        params = {n: (p.detach().requires_grad_(True) if n in names else p) for n, p in params.items()}
    logits = functional_call(model, params, (x,))
    return torch.autograd.grad(loss_fn(logits, y), [params[n] for n in names], create_graph=create_graph)
