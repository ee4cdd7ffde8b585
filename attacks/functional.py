"""DLG's matching loss as one pure function of the unknowns, vectorised and optionally compiled.

For a FedSGD update the squared L2 distance of Zhu et al. (eq. 4),
``||grad_W loss_fn(F(x', W), y') - grad||^2``, depends on the weights W only through tensors
that can be passed in. Written with ``torch.func`` (the inner gradient is ``torch.func.grad``
of the same :func:`gradleak.federated.loss_fn` the clients use), it is evaluated for P problems
at once with ``vmap`` and returns, per problem, the loss, each update tensor's squared error
and the gradient with respect to the unknowns.

``compile=True`` hands the function to ``torch.compile``. On a small network such as LeNet-Zhu an
evaluation is a few hundred small operators whose dispatch, not arithmetic, is most of its cost;
compiling removes most of it but the first call pays the compilation (tens of seconds; measured in
docs/attacks.md), so it pays for searches of more than a few thousand evaluations. One compiled function serves
every problem on a network of the same structure, shapes and precision: the weights, buffers
and targets are its inputs, not constants.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import warnings
from typing import Callable, Iterator

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from gradleak.errors import GradleakError
from gradleak.federated import loss_fn, trainable_names
from gradleak.threat import ServerView

# compiled functions by network structure, so that every problem on the same network reuses one
_COMPILED: dict[tuple, Callable] = {}


def supports(view: ServerView) -> str | None:
    """Why the functional loss cannot serve ``view``, or None when it can."""
    if view.kind != "gradient":
        return "it inverts FedSGD gradients only, not FedAvg deltas"
    if view.model_mode == "train" and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in view.model.modules()):
        return "BatchNorm in train mode updates running statistics, which torch.func cannot trace"
    return None


class FunctionalMatching:
    """Loss, per-tensor squared errors and gradient of the L2 matching loss for P problems at once.

    Unknowns ``z`` (P, n): each problem's normalised images, flattened, then (``joint_labels``)
    one row of label logits per image. The problems share the network and differ in their
    targets (P, update size) and, without joint labels, their labels (P, B).
    """

    def __init__(self, view: ServerView, joint_labels: bool, dtype: torch.dtype, compile: bool = False) -> None:
        reason = supports(view)
        if reason is not None:
            raise GradleakError(f"the functional matching loss does not apply here: {reason}")
        model = view.model
        self.names = trainable_names(model)
        named = dict(model.named_parameters())
        self.params = {n: named[n].detach().to(dtype) for n in self.names}
        # frozen parameters and buffers too: functional_call must see the whole model in one precision
        self.fixed = {n: b.to(dtype) if b.is_floating_point() else b for n, b in model.named_buffers()}
        self.fixed.update({n: p.detach().to(dtype) for n, p in named.items() if n not in self.names})
        self.shape = (view.num_examples, *view.input_shape)
        self.pixels = math.prod(self.shape)
        self.classes = view.num_classes
        self.joint = joint_labels
        sizes = [self.params[n].numel() for n in self.names]
        device = view.update[0].device
        self.layer = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).to(device)
        self.layers = len(sizes)
        training = view.model_mode == "train"
        key = (repr(model), tuple((n, tuple(t.shape)) for n, t in model.state_dict().items()), training, self.shape,
               self.classes, joint_labels, dtype, device)
        if compile and key in _COMPILED:
            self._value_and_grad = _COMPILED[key]
            return
        # The template's weights are never read (functional_call replaces them all), only its
        # structure; a copy, so that a cached function does not hold on to the caller's model.
        template = copy.deepcopy(model).train(training)  # in the mode the client trained in
        shape, pixels, classes, names, layers = self.shape, self.pixels, self.classes, self.names, self.layers

        def matching_loss(z, target, label, params, fixed, layer):
            x = z[:pixels].view(shape)
            y = z[pixels:].view(shape[0], classes).softmax(-1) if joint_labels else label

            def client_loss(trainable):
                return loss_fn(functional_call(template, {**fixed, **trainable}, (x,)), y)

            grads = torch.func.grad(client_loss)(params)
            diff = torch.cat([grads[n].flatten() for n in names]) - target
            squared = torch.zeros(layers, dtype=diff.dtype, device=diff.device).index_add(0, layer, diff.square())
            return squared.sum(), squared

        value_and_grad = vmap(grad_and_value(matching_loss, has_aux=True), in_dims=(0, 0, 0, None, None, None))
        if compile:
            value_and_grad = compile_quietly(value_and_grad)
            _COMPILED[key] = value_and_grad
        self._value_and_grad = value_and_grad

    def __call__(
        self, z: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss (P,), squared error per update tensor (P, layers) and gradient (P, n) at ``z``."""
        try:
            grads, (loss, squared) = self._value_and_grad(z, targets, labels, self.params, self.fixed, self.layer)
        except torch._dynamo.exc.BackendCompilerFailed as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GradleakError(
                f"torch.compile failed ({first}); it needs a C++ compiler on the CPU and Triton on CUDA: "
                "install one or drop compile=true"
            ) from exc
        return loss, squared, grads


def compile_quietly(function: Callable) -> Callable:
    """``torch.compile(function)``, without two notices the compiler prints on every CPU machine.

    The notices are silenced only while the compiled function runs (it compiles on its first
    calls), so the caller's logging and warning settings stay as they were.
    """
    compiled = torch.compile(function)

    @functools.wraps(function)
    def quietly(*args, **kwargs):
        with _quiet_compiler():
            return compiled(*args, **kwargs)

    return quietly


@contextlib.contextmanager
def _quiet_compiler() -> Iterator[None]:
    logger = logging.getLogger("torch.utils.cpp_extension")  # "No CUDA runtime is found"
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch._prims_common.check", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)
