"""``vet``: the client checks the model it received before training on it.

SEER (Garov, Dimitrov, Jovanović, Vechev, ICLR 2024) argues that every earlier malicious-server
attack leaves a signature a client can see in the model itself. All of them make a linear layer
y = Wx + b isolate single examples, so that x_n = (dL/dW_i) / (dL/db_i) for a row i that only
example n activates (Phong et al. 2017). ``vet`` refuses a model showing:

(a) another architecture than the declared one (module tree or parameter shapes): an inserted
    imprint block (Fowl et al., ICLR 2022);
(b) a layer whose rows are copies of one direction with spread biases: the imprint signature,
    k rows measuring the same statistic <a, x> with biases at its quantiles;
(c) a weight the client's batch gives (almost) no gradient: a dead layer that zeroes the
    update, as model inconsistency sends every non-target client (Pasquini et al., CCS 2022);
(d) a first layer most of whose rows the client's batch activates for at most one example in
    eight: trap weights (Boenisch et al., EuroS&P 2023), judged on batches of ``min_examples``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn

from gradleak.defenses import register
from gradleak.defenses.base import Defense
from gradleak.spec import Range

MIN_ROW_LENGTH = 8  # rows shorter than this can be collinear by chance (a 1x1 conv on 2 channels)


@dataclass(frozen=True)
class VetConfig:
    collinear: Annotated[float, Range(0, 1, low_open=True)] = 0.999  # |cos| to a layer's main direction that makes a row a copy
    copies: Annotated[float, Range(0, 1, low_open=True)] = 0.5  # share of a layer's rows that are copies: the imprint signature
    min_rows: Annotated[int, Range(2, 10**6)] = 4  # layers with fewer rows are not judged for copies
    dead: Annotated[float, Range(0, 1)] = 1e-9  # a weight's gradient norm below this times the largest weight's is none
    rare: Annotated[float, Range(0, 1, low_open=True)] = 0.45  # share of first-layer rows firing for <= 1 in 8 examples (honest <= 0.33)
    min_examples: Annotated[int, Range(2, 10**6)] = 8  # batches smaller than this are not judged for traps


def architecture(model: nn.Module) -> list[tuple[str, str]]:
    """The module tree and parameter shapes, by name: what the server declares and cannot change."""
    modules = [(name, type(m).__name__) for name, m in model.named_modules()]
    shapes = [(name, str(tuple(t.shape))) for name, t in (*model.named_parameters(), *model.named_buffers())]
    return modules + shapes


def copy_share(layer: nn.Module, collinear: float, min_rows: int) -> float:
    """The share of a layer's rows in its largest group parallel to one direction (|cos| >=
    ``collinear``) whose biases differ; 0 for layers too small to judge or copies of one bias."""
    rows = layer.weight.detach().reshape(layer.weight.shape[0], -1).float()
    norms = rows.norm(dim=1)
    live = norms > 0
    if int(live.sum()) < min_rows or rows.shape[1] < MIN_ROW_LENGTH:
        return 0.0
    unit = rows[live] / norms[live, None]
    cosines = (unit @ unit.T).abs()
    # the largest group of rows parallel to one row (an SVD costs seconds on wide layers)
    copies = cosines[(cosines >= collinear).sum(1).argmax()] >= collinear
    if int(copies.sum()) < min_rows or layer.bias is None or len(torch.unique(layer.bias.detach()[live][copies])) < 2:
        return 0.0
    return float(copies.double().mean())


def probe(received: nn.Module, x: torch.Tensor) -> tuple[list[tuple[str, float]], torch.Tensor | None]:
    """Each trainable weight's (matrix or kernel) gradient norm relative to the largest, under a
    fixed random read-out of the logits on ``x``, and the first linear or convolutional layer's
    output. Biases are left out: one before a per-channel norm (GroupNorm with one channel per
    group) has no gradient in an honest model too."""
    model = copy.deepcopy(received).eval()  # eval: the check leaves batch-norm statistics alone
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
    seen: list[torch.Tensor] = []
    hook = first.register_forward_hook(lambda _m, _i, out: seen.append(out.detach())) if first else None
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    with torch.enable_grad():
        logits = model(x)
        # a random read-out reaches every live parameter, whatever the labels or the confidence
        readout = torch.randn(logits.shape[1:], generator=torch.Generator().manual_seed(0)).to(logits)
        grads = torch.autograd.grad((logits * readout).sum(), [p for _, p in params], allow_unused=True)
    if hook is not None:
        hook.remove()
    norms = [0.0 if g is None else float(g.detach().double().norm()) for g in grads]
    largest = max(norms, default=0.0) or 1.0
    return [(name, norm / largest) for (name, _), norm in zip(params, norms)], (seen[0] if seen else None)


def rare_share(first_out: torch.Tensor) -> float:
    """The share of first-layer rows (channels) that fire for at most one in eight examples."""
    fired = (first_out > 0).flatten(2).any(2) if first_out.dim() > 2 else first_out > 0
    return float((fired.sum(0) <= max(1, len(first_out) // 8)).double().mean())


@register
class Vet(Defense):
    """SEER-style (Garov et al., ICLR 2024) client-side checks of the received model."""

    name = "vet"
    stage = "receive"
    Config = VetConfig

    def on_receive(self, received: nn.Module, declared: nn.Module, public_x: torch.Tensor) -> str | None:
        return (
            self.changed_architecture(received, declared)
            or self.copied_rows(received)
            or self.dead_or_trapped(received, public_x)
        )

    def changed_architecture(self, received: nn.Module, declared: nn.Module) -> str | None:
        got, want = architecture(received), architecture(declared)
        if got == want:
            return None
        first = next((g for g, w in zip(got, want) if g != w), got[len(want)] if len(got) > len(want) else want[len(got)])
        return f"architecture differs from the declared one (first at {first[0] or 'the root'}: {first[1]})"

    def copied_rows(self, received: nn.Module) -> str | None:
        for name, layer in received.named_modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                share = copy_share(layer, self.config.collinear, self.config.min_rows)
                if share >= self.config.copies:
                    return f"layer {name}: {share:.0%} of its rows copy one direction with spread biases (an imprint block)"
        return None

    def dead_or_trapped(self, received: nn.Module, x: torch.Tensor) -> str | None:
        ratios, first_out = probe(received, x)
        for name, ratio in ratios:
            if ratio <= self.config.dead:
                return f"weight {name} gets no gradient on the client's batch (a dead layer zeroes the update)"
        if first_out is not None and len(x) >= self.config.min_examples:
            rare = rare_share(first_out)
            if rare >= self.config.rare:
                return f"{rare:.0%} of the first layer's rows fire for at most one in eight of {len(x)} examples (trap weights)"
        return None
