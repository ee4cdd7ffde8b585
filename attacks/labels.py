"""Labels read off the last layer's update, before any image is reconstructed.

For a linear last layer ``z = W h + b`` and mean cross-entropy over B examples,
``dL/dW_c = (1/B) sum_i (p_ic - y_ic) h_i`` and ``dL/db_c = (1/B) sum_i (p_ic - y_ic)``:
a class present in the batch pulls its row negative.

- ``idlg``: Zhao, Mopuri, Bilen, "iDLG: Improved Deep Leakage from Gradients", 2020, Sec. 3.
  One example and non-negative penultimate activations ``h`` (sigmoid, ReLU): only the true
  class's row has a negative sum, so the label is the argmin of the row sums.
- ``yin``: Yin et al., "See through Gradients", CVPR 2021, eq. 4. B examples with distinct
  labels: the labels are the B classes whose rows have the most negative minimum.
- ``counts``: for labels that repeat, the count of class c is estimated from
  ``n_c = B (p̄_c - g_c / s̄)``, where g_c is the bias gradient (``s̄ = 1``) or, without a
  bias, the weight row sum (``s̄`` the mean activation sum); ``p̄`` and ``s̄`` are the model's
  mean softmax and activation sum on probe inputs, after Geng et al., "Towards General Deep
  Leakage in Federated Learning", 2021, Sec. 3.2, and Wainakh et al., "User-Level Label
  Leakage from Gradients in Federated Learning", PETS 2022. Classes that must be present
  (negative g_c) get at least one example; the rest are rounded by largest remainders to B.
- ``known``: the view's ``known_labels``, side information some experiments grant.

A FedAvg weight delta is ``-eta`` times a sum of gradients, so it is read with its sign
flipped and divided by ``eta`` times the local steps. Its E steps were taken at moving
weights, so ``counts`` takes ``p̄`` and ``s̄`` as the mean over the E steps, each probed on the
straight line from the start to the end weights (``W_0 + (t/E) Δ``, t = 0..E-1), after
Dimitrov et al., "Data Leakage in Federated Averaging", TMLR 2022, who estimate the FedSGD
label statistics at every FedAvg step on such interpolated weights.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from gradleak.errors import GradleakError
from gradleak.registry import Registry
from gradleak.threat import ServerView

LabelRule = Callable[[ServerView], torch.Tensor]
LABEL_RULES: Registry[LabelRule] = Registry("label strategy")

PROBES = 64  # random inputs the counts rule estimates mean softmax and activations from


def last_layer(view: ServerView) -> tuple[nn.Linear, int, int | None]:
    """The classifier layer and the positions of its weight and bias in ``view.update``."""
    linears = [m for m in view.model.modules() if isinstance(m, nn.Linear) and m.out_features == view.num_classes]
    if not linears:
        raise GradleakError(
            f"the model has no linear layer with {view.num_classes} outputs to read labels from; "
            "use --labels known or an attack that optimises labels (dlg)"
        )
    layer = linears[-1]
    positions = {id(p): i for i, p in enumerate(p for p in view.model.parameters() if p.requires_grad)}
    if id(layer.weight) not in positions:
        raise GradleakError("the classifier's weight is frozen, so its update reveals no labels; use --labels known")
    bias = positions.get(id(layer.bias)) if layer.bias is not None else None
    return layer, positions[id(layer.weight)], bias


def mean_gradient(view: ServerView, tensor: torch.Tensor) -> torch.Tensor:
    """The mean gradient one tensor of the update stands for: a FedAvg delta is -eta times the sum
    of its E steps' gradients, so -delta / (eta E); a FedSGD gradient is itself."""
    if view.kind == "gradient":
        return tensor.detach()
    return -tensor.detach() / (view.local.learning_rate * view.local.local_steps)


@LABEL_RULES.register("idlg")
def idlg_labels(view: ServerView) -> torch.Tensor:
    """iDLG: the class whose last-layer weight-gradient row sums to the most negative value."""
    if view.num_examples != 1:
        raise GradleakError(
            f"the iDLG label rule reads one example's label, but the update holds {view.num_examples}; "
            "use --labels yin (distinct labels) or counts"
        )
    _, weight, _ = last_layer(view)
    rows = mean_gradient(view, view.update[weight]).sum(dim=1)
    return rows.argmin().reshape(1)


@LABEL_RULES.register("yin")
def yin_labels(view: ServerView) -> torch.Tensor:
    """Yin et al.: the B classes whose weight-gradient rows have the most negative minimum (distinct labels)."""
    if view.num_examples > view.num_classes:
        raise GradleakError(
            f"{view.num_examples} examples cannot have distinct labels among {view.num_classes} classes; "
            "use --labels counts"
        )
    _, weight, _ = last_layer(view)
    minima = mean_gradient(view, view.update[weight]).min(dim=1).values
    return minima.argsort()[: view.num_examples].sort().values


@LABEL_RULES.register("counts")
def count_labels(view: ServerView) -> torch.Tensor:
    """How many examples of each class, estimated from the bias (or row-sum) gradient; labels may repeat."""
    layer, weight, bias = last_layer(view)
    mean_softmax, activation_sum = _probe(view, layer)
    if bias is not None:
        signal, scale = mean_gradient(view, view.update[bias]), 1.0
    else:
        signal, scale = mean_gradient(view, view.update[weight]).sum(dim=1), activation_sum
    batch = view.num_examples
    estimate = (batch * (mean_softmax - signal / scale)).clamp_min(0)
    counts = (signal < 0).long()  # a negative entry means the class is there at least once
    if int(counts.sum()) > batch:
        counts = torch.zeros_like(counts)
        counts[signal.argsort()[:batch]] = 1
    remainder = (estimate - counts).clamp_min(0)
    while int(counts.sum()) < batch:
        pick = int(remainder.argmax())
        counts[pick] += 1
        remainder[pick] -= 1
    return torch.repeat_interleave(torch.arange(view.num_classes, device=counts.device), counts)


@LABEL_RULES.register("known")
def known_labels(view: ServerView) -> torch.Tensor:
    """The labels the experiment granted the server as side information."""
    if view.known_labels is None:
        raise GradleakError(
            "--labels known needs the labels as side information, but this view has none; "
            "grant them (known_labels in the scenario) or choose idlg, yin or counts"
        )
    return view.known_labels.detach().clone()


@torch.no_grad()
def _probe(view: ServerView, layer: nn.Linear) -> tuple[torch.Tensor, float]:
    """Mean softmax and mean activation sum feeding ``layer``, on random inputs in the valid pixel box.

    For a FedAvg delta, averaged over the weights of its local steps (see the module docstring).
    """
    position = list(view.model.modules()).index(layer)
    model = copy.deepcopy(view.model).train(view.model_mode == "train")  # BN statistics move in train mode
    trainable = [p for p in model.parameters() if p.requires_grad]
    features: list[torch.Tensor] = []
    hook = list(model.modules())[position].register_forward_hook(lambda m, args, out: features.append(args[0]))
    device = layer.weight.device
    generator = torch.Generator(device=device).manual_seed(0)
    inputs = view.normalization.normalize(torch.rand((PROBES, *view.input_shape), generator=generator, device=device))
    steps = view.local.local_steps if view.kind == "delta" else 1
    softmax = []
    for step in range(steps):
        if step:  # on to the next step's weights, W_0 + (step/E) delta
            for param, delta in zip(trainable, view.update):
                param.add_(delta, alpha=1 / steps)
        softmax.append(model(inputs).softmax(dim=1).mean(0))
    hook.remove()
    return torch.stack(softmax).mean(0), float(torch.stack([f.sum(dim=1).mean() for f in features]).mean())


def recover_labels(view: ServerView, strategy: str) -> torch.Tensor:
    """Labels by rule ``strategy`` (``auto``: ``idlg`` for one example, ``counts`` for a batch), on the update's device."""
    if strategy == "auto":
        strategy = "idlg" if view.num_examples == 1 else "counts"
    return LABEL_RULES.get(strategy)(view).to(view.update[0].device)
