"""R-GAP: Recursive Gradient Attack on Privacy.

Zhu, Blaschko, "R-GAP: Recursive Gradient Attack on Privacy", ICLR 2021, Sec. 3. For a chain
of affine layers ``z_k = W_k a_{k-1} + b_k`` (Linear, Conv2d) with invertible activations
``a_k = sigma_k(z_k)``, one example's gradient fixes the example layer by layer, from the top,
through linear equations:

- the last layer's bias gradient is ``g = dl/dz_K``, and its weight gradient is ``g a_{K-1}^T``,
  so ``a_{K-1} = grad(W_K)^T g / ||g||^2``;
- below, knowing ``a_k`` and the loss gradient ``u_k = dl/da_k`` (sent down through the layer
  above), ``z_k = sigma_k^{-1}(a_k)`` and ``delta_k = u_k * sigma_k'(z_k)``. The layer's input
  ``a_{k-1}`` then satisfies two sets of linear equations (eq. 9-11): the forward pass
  ``W_k a_{k-1} = z_k - b_k``, and the weight gradient ``grad(W_k) = delta_k a_{k-1}^T`` (for a
  convolution, summed over positions). They are solved together in the least-squares sense.

On LeNet-Zhu the input layer (stride 2) gives 3,072 forward and 900 gradient equations for a
32x32 RGB image's 3,072 unknowns, so it is determined (the paper's rank analysis); a ReLU is
not invertible and is not covered. Not in the paper: the client rounds its gradient to
float32, and ``sigma^{-1}`` magnifies that rounding where a unit is near saturation, so each
forward equation is weighted by ``sigma'(z_k)`` (its error then counts in units of ``a_k``, as
the gradient equations' do): on LeNet-Zhu photos 0-5 x seeds 0-4 the analytic image went
from 17.5-105 dB (5 of 30 below 40 dB) to 46-90 dB. That image is the first start of DLG's
L-BFGS with the iDLG label (:mod:`gradleak.attacks.dlg`), which polishes what the rounding
left until every layer of the update matches; its later starts, if any, are DLG's random ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator, lsmr
from torch import nn
from torch.nn.grad import conv2d_input, conv2d_weight

from gradleak.attacks import adaptive, register
from gradleak.attacks.dlg import DLG, MAX_ITERATIONS, search_dtype
from gradleak.attacks.matching import GradientMatching, check_view
from gradleak.attacks.search_lbfgs import lbfgs_search
from gradleak.attacks.labels import recover_labels
from gradleak.errors import GradleakError
from gradleak.spec import Range
from gradleak.threat import Reconstruction, ServerView

AFFINE = (nn.Linear, nn.Conv2d)
RESHAPES = (nn.Flatten, nn.Identity)
# LSMR's atol and btol. The float32 gradient limits the solve anyway; at 1e-6 the polish had
# so much left that 30 photos took over 12 minutes, against 115 s at 1e-8.
TOLERANCE = 1e-8


def _sigmoid_inverse(a: torch.Tensor) -> torch.Tensor:
    # Features recovered from a float32 gradient can stray just outside (0, 1).
    return torch.logit(a, eps=1e-12)


def _tanh_inverse(a: torch.Tensor) -> torch.Tensor:
    return torch.atanh(a.clamp(-1 + 1e-12, 1 - 1e-12))


# activation -> (z from a, sigma'(z) from a)
INVERSES: dict[type[nn.Module], Callable[[nn.Module], tuple[Callable, Callable]]] = {
    nn.Sigmoid: lambda m: (_sigmoid_inverse, lambda a: a * (1 - a)),
    nn.Tanh: lambda m: (_tanh_inverse, lambda a: 1 - a.square()),
    nn.LeakyReLU: lambda m: (
        lambda a: torch.where(a >= 0, a, a / m.negative_slope),
        lambda a: torch.where(a >= 0, torch.ones_like(a), torch.full_like(a, m.negative_slope)),
    ),
}


@dataclass
class Layer:
    """One affine layer of the chain, with the activation after it (None for the last)."""

    module: nn.Module
    name: str  # its parameters' prefix in the model
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    activation: nn.Module | None


def affine_chain(model: nn.Module, input_shape: tuple[int, ...]) -> list[Layer]:
    """The model as affine layers and invertible activations, or a GradleakError saying why not."""
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    unsupported = sorted({type(m).__name__ for _, m in leaves if not isinstance(m, (*AFFINE, *RESHAPES, *INVERSES))})
    if unsupported or any(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0 for _, m in leaves):
        raise GradleakError(
            f"rgap inverts chains of Linear/Conv2d layers with sigmoid, tanh or leaky-ReLU activations; "
            f"this model has {', '.join(unsupported) or 'a LeakyReLU of slope 0'}: use dlg or ig"
        )
    layers: list[Layer] = []
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, (i[0].shape[1:], o.shape[1:])))
        for name, m in leaves
        if isinstance(m, AFFINE)
    ]
    first = next(model.parameters())
    x = torch.randn(1, *input_shape, dtype=first.dtype, device=first.device)
    try:
        with torch.no_grad():
            expected = model(x)
            chained = x
            for _, m in leaves:
                chained = m(chained)
    finally:
        for hook in hooks:
            hook.remove()
    if chained.shape != expected.shape or not torch.allclose(chained, expected, rtol=1e-4, atol=1e-5):
        raise GradleakError("rgap needs a model whose modules run one after another (a plain chain): use dlg or ig")
    for name, m in leaves:
        if isinstance(m, AFFINE):
            layers.append(Layer(m, name, tuple(shapes[name][0]), tuple(shapes[name][1]), None))
        elif isinstance(m, tuple(INVERSES)):
            if not layers or layers[-1].activation is not None:
                raise GradleakError("rgap needs exactly one activation after each affine layer: use dlg or ig")
            layers[-1].activation = m
    if not layers or not isinstance(layers[-1].module, nn.Linear) or layers[-1].activation is not None:
        raise GradleakError("rgap needs a last Linear layer producing the logits: use dlg or ig")
    if layers[-1].module.bias is None:
        raise GradleakError("rgap reads dl/dlogits off the last layer's bias gradient; this model's has no bias")
    if any(layer.activation is None for layer in layers[:-1]):
        raise GradleakError("rgap needs an activation after every affine layer but the last: use dlg or ig")
    return layers


class LinearEquations:
    """``z = W a`` and ``grad(W) = delta a^T`` as linear maps of ``a``, and their transposes."""

    def __init__(self, layer: Layer, delta: torch.Tensor) -> None:
        self.weight, self.delta = layer.module.weight.detach().cpu().double(), delta

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.weight @ a

    def forward_t(self, r: torch.Tensor) -> torch.Tensor:
        return self.weight.T @ r

    def weight_gradient(self, a: torch.Tensor) -> torch.Tensor:
        return torch.outer(self.delta, a)

    def weight_gradient_t(self, r: torch.Tensor) -> torch.Tensor:
        return r.T @ self.delta


class ConvEquations(LinearEquations):
    """The same for a convolution: its weight gradient sums ``delta`` times input patches over positions."""

    def __init__(self, layer: Layer, delta: torch.Tensor) -> None:
        super().__init__(layer, delta)
        m = layer.module
        if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise GradleakError("rgap handles convolutions with groups=1 and numeric zero padding: use dlg or ig")
        self.in_shape = (1, *layer.in_shape)
        self.options = {"stride": m.stride, "padding": m.padding, "dilation": m.dilation}

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return F.conv2d(a[None], self.weight, **self.options)[0]

    def forward_t(self, r: torch.Tensor) -> torch.Tensor:
        return conv2d_input(self.in_shape, self.weight, r[None], **self.options)[0]

    def weight_gradient(self, a: torch.Tensor) -> torch.Tensor:
        return conv2d_weight(a[None], self.weight.shape, self.delta[None], **self.options)

    def weight_gradient_t(self, r: torch.Tensor) -> torch.Tensor:
        return conv2d_input(self.in_shape, r, self.delta[None], **self.options)[0]


EQUATIONS: dict[type[nn.Module], type[LinearEquations]] = {nn.Linear: LinearEquations, nn.Conv2d: ConvEquations}


def _solve_input(
    layer: Layer, z: torch.Tensor, slope: torch.Tensor, equations: LinearEquations, weight_gradient: torch.Tensor
):
    """Least-squares input of ``layer`` given its pre-activation ``z``: ``W a = z - b`` and ``grad(W) = delta a^T``.

    ``slope`` (``sigma'(z)``) weights each forward equation (see the module docstring); then
    each block is scaled by its right-hand side's norm, so that both count by their relative
    error, as the engine scores layers.
    """
    bias = layer.module.bias.detach().cpu().double() if layer.module.bias is not None else torch.zeros(())
    forward_rhs = z - bias.view(-1, *[1] * (len(layer.out_shape) - 1))
    scale_forward = slope / (slope * forward_rhs).norm().clamp_min(1e-30)
    scale_gradient = 1 / weight_gradient.norm().clamp_min(1e-30)
    rhs = torch.cat([(scale_forward * forward_rhs).flatten(), scale_gradient * weight_gradient.flatten()])
    split = forward_rhs.numel()
    unknowns = math.prod(layer.in_shape)

    def matvec(v: np.ndarray) -> np.ndarray:
        a = torch.from_numpy(np.ascontiguousarray(v)).view(layer.in_shape)
        return torch.cat(
            [(scale_forward * equations.forward(a)).flatten(), scale_gradient * equations.weight_gradient(a).flatten()]
        ).numpy()

    def rmatvec(v: np.ndarray) -> np.ndarray:
        r = torch.from_numpy(np.ascontiguousarray(v)).flatten()
        forward_part = equations.forward_t(scale_forward * r[:split].view(layer.out_shape))
        gradient_part = equations.weight_gradient_t(scale_gradient * r[split:].view(weight_gradient.shape))
        return (forward_part + gradient_part).flatten().numpy()

    operator = LinearOperator((rhs.numel(), unknowns), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
    solution, _, iterations, residual, *_ = lsmr(operator, rhs.numpy(), atol=TOLERANCE, btol=TOLERANCE, maxiter=5000)
    return torch.from_numpy(solution).view(layer.in_shape), {
        "unknowns": unknowns,
        "equations": rhs.numel(),
        "relative_residual": float(residual / rhs.norm()),
        "lsmr_iterations": int(iterations),
    }


def analytic_inversion(view: ServerView) -> tuple[torch.Tensor, list[dict]]:
    """R-GAP's recursion: the normalised input (1, C, H, W) in float64, and each layer's solve."""
    if view.num_examples != 1 or view.kind != "gradient":
        raise GradleakError(
            "rgap inverts one example's FedSGD gradient; for batches or FedAvg deltas use dlg, ig or fedavg"
        )
    model = view.model
    layers = affine_chain(model, view.input_shape)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    gradients = {name: u.detach().cpu().double() for name, u in zip(names, view.update)}
    frozen = [f"{layer.name}.weight" for layer in layers if f"{layer.name}.weight" not in gradients]
    if frozen or f"{layers[-1].name}.bias" not in gradients:
        raise GradleakError(f"rgap needs every layer's weight gradient and the last bias's; frozen: {frozen or 'the last bias'}")
    top = layers[-1]
    g = gradients[f"{top.name}.bias"]
    if float(g @ g) == 0:
        raise GradleakError("the last layer's bias gradient is zero: the example is fitted exactly, nothing to invert")
    a = (g @ gradients[f"{top.name}.weight"]) / (g @ g)
    u = g @ top.module.weight.detach().cpu().double()
    solves = []
    for layer in reversed(layers[:-1]):
        inverse, derivative = INVERSES[type(layer.activation)](layer.activation)
        a = a.view(layer.out_shape)
        slope = derivative(a)
        z, delta = inverse(a), u.view(layer.out_shape) * slope
        equations = EQUATIONS[type(layer.module)](layer, delta)
        a, info = _solve_input(layer, z, slope, equations, gradients[f"{layer.name}.weight"])
        solves.append({"layer": layer.name, **info})
        u = equations.forward_t(delta)
    return a.view(1, *view.input_shape), solves


@register
class RGAP(DLG):
    name = "rgap"

    @dataclass(frozen=True)
    class Config(DLG.Config):
        iterations: Annotated[int, Range(0, MAX_ITERATIONS)] = 10000  # L-BFGS polishing the analytic image (R-GAP: none, 0)
        labels: str = "idlg"  # the analytic rule (R-GAP reads g off the bias gradient too); or known

    def reconstruct(
        self, view: ServerView, on_check: Callable[[int, torch.Tensor], None] | None = None
    ) -> Reconstruction:
        """``on_check`` watches the polishing search, as in :meth:`DLG.reconstruct`."""
        if self.config.labels == "joint":
            raise GradleakError("rgap fixes the label before it inverts; use labels=idlg or labels=known")
        check_view(view)
        images, solves = analytic_inversion(view)
        if not torch.isfinite(images).all():
            raise GradleakError("the analytic solve produced NaN: the gradient does not fit this model; use dlg")
        labels = recover_labels(view, self.config.labels)
        if self.config.iterations == 0:
            return Reconstruction(
                images=view.normalization.denormalize(images.float()), labels=labels.cpu(), history=[],
                info={"evaluations": 0, "starts": 1, "analytic": solves, "label_strategy": self.config.labels},
            )
        observed, adapted = adaptive.observations(view) if self.config.adaptive else (None, {})
        problem = GradientMatching(
            view, objective="l2", labels=labels, tv=self.config.tv, dtype=search_dtype(self.config.precision),
            compile=self.config.compile, observations=observed,
        )
        start = images.to(problem.device, problem.dtype).flatten()
        generator = torch.Generator(device=problem.device).manual_seed(self.config.seed)
        search = lbfgs_search(problem, self.settings(problem), generator, desc=self.name, on_check=on_check, first=start)
        return problem.reconstruction(search, labels, label_strategy=self.config.labels, analytic=solves, **adapted)
