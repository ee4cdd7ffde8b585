"""Per-example clipping without per-example gradients: ghost norms and book-keeping.

DP-SGD (Abadi et al. 2016) releases ``sum_i c_i g_i`` with ``c_i = min(1, C / ||g_i||)``. Only the
norms ``||g_i||`` and that one weighted sum are needed, not the per-example gradients ``g_i``.
For a layer that maps example i's activations ``a_i`` (T x d: T positions, one for a Linear on
a vector, H_out W_out for an unfolded Conv2d) to ``s_i = a_i W^T`` (T x p), with output gradient
``e_i = d loss_i / d s_i`` (T x p), example i's weight gradient is ``e_i^T a_i`` (p x d) and

    ||e_i^T a_i||_F^2 = <a_i a_i^T, e_i e_i^T>      (ghost norm: Li, Tramer, Liang, Hashimoto,
                                                      "Large Language Models Can Be Strong
                                                      Differentially Private Learners", ICLR 2022, Sec. 4)

costs ``T^2 (d + p)`` against ``T d p`` for forming ``e_i^T a_i`` and squaring it. Each layer takes
the cheaper, decided from its shapes (mixed ghost clipping: Bu, Mao, Xu, "Scalable and Efficient
Training of Large Convolutional Neural Networks with Differential Privacy", NeurIPS 2022).
Biases (``sum_t e_it``) and GroupNorm / LayerNorm affine parameters (``sum_t e_it * a^_it`` with
``a^`` the normalised input) have cheap per-example gradients, formed directly.

Book-keeping (Bu, Mao, Xu, "Differentially Private Optimization on Large Model at Small Cost",
ICML 2023, Alg. 1): one forward pass stores every layer's ``a``, one backward pass (with respect to
the layer outputs only, no weight gradients) gives every ``e``; the norms give ``c``, and the
clipped sum is formed from the same stored tensors, ``sum_i c_i e_i^T a_i = (c . e)^T a``, with no
second backward pass. The result is the per-example (vmap) clipped sum, exactly, in exact
arithmetic.

A model qualifies when every module owning a trainable parameter is a Linear, a zero-padded
ungrouped Conv2d, a GroupNorm or a LayerNorm, called once per forward pass, with no parameter
shared between modules; otherwise :func:`clipped_gradient_sum` uses the vmap path as a whole.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from gradleak import gradients
from gradleak.defenses.gaussian import clip_factors

Params = dict[str, torch.Tensor]
Clipping = Literal["fast", "vmap"]
# A layer's contribution: per-example squared norms (B,), and the clipped sum given the factors c (B,).
Rule = tuple[torch.Tensor, Callable[[torch.Tensor], Params]]


class NotExact(Exception):
    """Raised when the book-keeping pass would not be exact for this model (the vmap path is used)."""


@dataclass
class _Call:
    """One call of a layer during the forward pass: its input ``a`` and its own output ``s``."""

    module: nn.Module
    a: torch.Tensor
    s: torch.Tensor


def _prefers_ghost(T: int, d: int, p: int) -> bool:
    """Ghost norm costs T^2 (d + p) per example, the per-example gradient T d p (Bu et al. 2022)."""
    return T * (d + p) < d * p


def _squared_norms(per_example: torch.Tensor) -> torch.Tensor:
    """``||g_i||^2`` of per-example tensors (B, ...), without a squared temporary."""
    return torch.linalg.vector_norm(per_example.flatten(1), dim=1).square()


def _ghost_norms(A: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """``||e_i^T a_i||_F^2 = <a_i a_i^T, e_i e_i^T>`` for A (B, T, d), E (B, T, p) (Li et al. 2022)."""
    return ((A @ A.mT) * (E @ E.mT)).sum((1, 2)).clamp(min=0)  # clamp: rounding may dip below 0


def _direct(per_example: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Squared norms of per-example gradients (B, ...) and their weighted sum ``sum_i c_i g_i``."""
    return _squared_norms(per_example), lambda c: torch.einsum("b,b...->...", c, per_example)


def _linear(m: nn.Linear, a: torch.Tensor, e: torch.Tensor, names: dict[str, str]) -> Rule:
    A, E = a.reshape(len(a), -1, m.in_features), e.reshape(len(e), -1, m.out_features)
    squares, sums = [], {}
    if "weight" in names:
        if _prefers_ghost(A.shape[1], m.in_features, m.out_features):
            squares.append(_ghost_norms(A, E))  # the clipped sum is (c . e)^T a over examples and positions
            sums["weight"] = lambda c: (E * c[:, None, None]).flatten(0, 1).T @ A.flatten(0, 1)
        else:
            sq, sums["weight"] = _direct(E.mT @ A)
            squares.append(sq)
    if "bias" in names:
        sq, sums["bias"] = _direct(E.sum(1))
        squares.append(sq)
    return _finish(squares, sums, names)


# Examples per im2col block: about a MiB of float32 patches, so a block stays in cache between
# being written and multiplied.
BLOCK_FLOATS = 1 << 18


class _Scratch(threading.local):
    """Memory for per-example gradients and patches, kept per thread from one call to the next.

    Allocated afresh each step, these few MB went back to the OS at the step's end and were
    faulted back in at the next, a thousand page faults a step on LeNet-Zhu at batch 64, in some
    processes and not others. Slices are handed out in order and all taken back at :meth:`reset`,
    which sizes the buffer to what the last call took; nothing taken escapes
    :func:`book_keeping_clipped_sum`.
    """

    def __init__(self) -> None:
        self.buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self.used: dict[tuple[torch.device, torch.dtype], int] = {}

    def reset(self) -> None:
        for (device, dtype), need in self.used.items():
            if (device, dtype) not in self.buffers or self.buffers[device, dtype].numel() < need:
                self.buffers[device, dtype] = torch.empty(need, dtype=dtype, device=device)
        self.used.clear()

    def take(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        key, numel = (like.device, like.dtype), math.prod(shape)
        used, buffer = self.used.get(key, 0), self.buffers.get(key)
        self.used[key] = used + (numel + 15) // 16 * 16  # 64-byte aligned float32 slices
        if buffer is None or used + numel > buffer.numel():
            return like.new_empty(shape)  # outgrown: this call allocates, the next fits
        return buffer[used : used + numel].view(shape)


_scratch = _Scratch()


def _conv2d_per_example(m: nn.Conv2d, a: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Per-example weight gradients ``e_i^T a_i`` (B, p, kh, kw, c_in), a block of examples at a time.

    Each block is copied channels-last into a zero-bordered buffer, its patches ``a_i``
    (T x kh kw c_in) gathered in the order (kh, kw, c_in) whose inner runs are contiguous there, and
    multiplied by ``e_i`` in one batched product.
    """
    B, (p, c_in, kh, kw), (H, W) = len(a), m.weight.shape, a.shape[2:]
    (ph, pw), (sh, sw), (dh, dw) = m.padding, m.stride, m.dilation
    Ho, Wo = e.shape[2:]
    T, d = Ho * Wo, kh * kw * c_in
    E = e.flatten(2)  # (B, p, T)
    block = min(B, max(1, BLOCK_FLOATS // (T * d)))
    padded = _scratch.take((block, H + 2 * ph, W + 2 * pw, c_in), a).zero_()  # blocks overwrite only the inside
    patches = _scratch.take((block, Ho, Wo, kh, kw, c_in), a)
    G = _scratch.take((B, p, d), a)
    for start in range(0, B, block):
        n = min(block, B - start)
        padded[:n, ph : ph + H, pw : pw + W].copy_(a[start : start + n].permute(0, 2, 3, 1))
        windows = padded[:n].unfold(1, dh * (kh - 1) + 1, sh).unfold(2, dw * (kw - 1) + 1, sw)[..., ::dh, ::dw]
        patches[:n].copy_(windows.permute(0, 1, 2, 4, 5, 3))
        torch.bmm(E[start : start + n], patches[:n].view(n, T, d), out=G[start : start + n])
    return G.view(B, p, kh, kw, c_in)


def _conv2d(m: nn.Conv2d, a: torch.Tensor, e: torch.Tensor, names: dict[str, str]) -> Rule:
    if m.padding_mode != "zeros" or m.groups != 1 or isinstance(m.padding, str):
        raise NotExact(f"Conv2d with padding_mode={m.padding_mode!r}, groups={m.groups}, padding={m.padding!r}")
    squares, sums = [], {}
    if "weight" in names:
        shape, T = m.weight.shape, e.shape[2] * e.shape[3]
        if _prefers_ghost(T, shape[1:].numel(), m.out_channels):
            A = F.unfold(a, m.kernel_size, m.dilation, m.padding, m.stride).mT  # (B, T, d)
            squares.append(_ghost_norms(A, e.flatten(2).mT))
            # The clipped sum is the batch weight gradient of the re-weighted output gradient.
            sums["weight"] = lambda c: torch.nn.grad.conv2d_weight(
                a, shape, e * c.view(-1, 1, 1, 1), m.stride, m.padding, m.dilation
            )
        else:
            sq, weighted = _direct(_conv2d_per_example(m, a, e))
            sums["weight"] = lambda c: weighted(c).permute(0, 3, 1, 2).contiguous()  # (p, kh, kw, c_in) -> the weight's layout
            squares.append(sq)
    if "bias" in names:
        sq, sums["bias"] = _direct(e.sum((2, 3)))
        squares.append(sq)
    return _finish(squares, sums, names)


def _affine_norm(normalised: torch.Tensor, e: torch.Tensor, positions: tuple[int, ...], names: dict[str, str]) -> Rule:
    """GroupNorm / LayerNorm: per-example gradients of the affine weight and bias, summed over ``positions``."""
    squares, sums = [], {}
    for name, per_example in (("weight", e * normalised), ("bias", e)):
        if name in names:
            sq, sums[name] = _direct(per_example.sum(positions) if positions else per_example)
            squares.append(sq)
    return _finish(squares, sums, names)


def _group_norm(m: nn.GroupNorm, a: torch.Tensor, e: torch.Tensor, names: dict[str, str]) -> Rule:
    # Parameters on the channel dim 1; the positions are the spatial dims after it.
    return _affine_norm(F.group_norm(a, m.num_groups, eps=m.eps), e, tuple(range(2, e.dim())), names)


def _layer_norm(m: nn.LayerNorm, a: torch.Tensor, e: torch.Tensor, names: dict[str, str]) -> Rule:
    # Parameters on the trailing normalised dims; the positions are the dims between them and the batch.
    positions = tuple(range(1, e.dim() - len(m.normalized_shape)))
    return _affine_norm(F.layer_norm(a, m.normalized_shape, eps=m.eps), e, positions, names)


def _finish(squares: list[torch.Tensor], sums: dict[str, Callable], names: dict[str, str]) -> Rule:
    return sum(squares), lambda c: {names[local]: fn(c) for local, fn in sums.items()}


RULES: dict[type, Callable[[nn.Module, torch.Tensor, torch.Tensor, dict[str, str]], Rule]] = {
    nn.Linear: _linear,
    nn.Conv2d: _conv2d,
    nn.GroupNorm: _group_norm,
    nn.LayerNorm: _layer_norm,
}


def trainable_layers(model: nn.Module) -> dict[nn.Module, dict[str, str]]:
    """``{module: {local name: full name}}`` of the modules owning trainable parameters.

    Raises :class:`NotExact` when one has no norm rule or a parameter is shared between modules.
    """
    trainable = set(gradients.trainable_names(model))
    owners = Counter(
        id(p) for _, m in model.named_modules(remove_duplicate=False) for p in m.parameters(recurse=False)
    )
    if any(count > 1 for count in owners.values()):
        raise NotExact("a parameter or module is shared")
    layers = {}
    for prefix, m in model.named_modules():
        names = {local: f"{prefix}.{local}" if prefix else local for local, _ in m.named_parameters(recurse=False)}
        names = {local: full for local, full in names.items() if full in trainable}
        if names:
            if type(m) not in RULES:
                raise NotExact(f"no norm rule for {type(m).__name__}")
            layers[m] = names
    return layers


def book_keeping_clipped_sum(
    model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, clip: float
) -> Params:
    """``sum_i g_i min(1, C / ||g_i||)`` from one forward and one output-gradient backward pass.

    Raises :class:`NotExact` where the model is outside the rules (see the module docstring).
    """
    layers = trainable_layers(model)
    _scratch.reset()
    calls: list[_Call] = []

    def store(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        calls.append(_Call(module, inputs[0], output))
        return output.clone()  # in-place ops downstream (ReLU(inplace), out += identity) hit the clone, not s

    trainable = {full for names in layers.values() for full in names.values()}
    theta = {n: p.detach().requires_grad_(n in trainable) for n, p in params.items()}
    handles = [m.register_forward_hook(store) for m in layers]
    try:
        logits = functional_call(model, theta, (x,))
    finally:
        for handle in handles:
            handle.remove()
    if len({id(call.module) for call in calls}) != len(calls):
        raise NotExact("a layer is called more than once per forward pass")
    # Summed per-example losses: the gradient at s is then each example's own e_i.
    loss = gradients.loss_fn(logits, y) * len(x)
    outputs = torch.autograd.grad(loss, [call.s for call in calls], allow_unused=True)
    rules = []
    for call, e in zip(calls, outputs):
        if e is not None:
            rules.append(RULES[type(call.module)](call.module, call.a.detach(), e, layers[call.module]))
    norms = torch.sqrt(sum(sq for sq, _ in rules)) if rules else torch.zeros(len(x), dtype=x.dtype, device=x.device)
    c = clip_factors(norms, clip)
    summed = {n: torch.zeros_like(params[n]) for n in trainable}
    for _, weighted in rules:
        summed.update(weighted(c))
    return {n: summed[n] for n in gradients.trainable_names(model)}


def clipped_gradient_sum(
    model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, clip: float, clipping: Clipping = "fast"
) -> Params:
    """DP-SGD's clipped sum: by book-keeping (``fast``) where the model qualifies, else by vmap."""
    # Imported here: dp_sgd imports this module, and its vmap path is the reference kept there.
    from gradleak.defenses.dp_sgd import check_per_example, clipped_sum, per_example_gradients

    check_per_example(model)
    if clipping == "fast":
        try:
            return book_keeping_clipped_sum(model, params, x, y, clip)
        except NotExact:
            pass
    return clipped_sum(per_example_gradients(model, params, x, y), clip)
