"""The gradient-matching problem every optimisation attack shares.

An attack states a :class:`GradientMatching` problem (which distance, which priors, labels
fixed or optimised jointly) and hands it to a search: DLG's L-BFGS
(:mod:`gradleak.attacks.search_lbfgs`) or Inverting Gradients' Adam
(:mod:`gradleak.attacks.search_adam`). Both run several starts, keep the best by a score, and
record a history (:class:`Search`).

The dummy update is computed by the client's own code (:func:`gradleak.federated.batch_gradient`
for FedSGD, :func:`gradleak.federated.local_update` unrolled with ``create_graph=True`` for
FedAvg) on a private copy of the model in the mode the client trained in, so the attacker's
model of the client cannot drift from the client. Images live in the model's normalised space.

Scoring: the objective alone is not trusted to rank starts. The summed L2 distance is
dominated by the layers with the largest gradients, and a start can sit at a loss of 1e-6 on
a 21 dB image. Every evaluation also yields each layer's relative error
(:func:`~gradleak.attacks.objectives.relative_errors`); L-BFGS starts are scored by the worst
of them, and a start counts as solved only when all layers agree.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Generic, Iterator, Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from gradleak.attacks.functional import FunctionalMatching
from gradleak.attacks.objectives import OBJECTIVES, relative_errors
from gradleak.attacks.priors import BatchNormStatistics, total_variation
from gradleak.errors import GradleakError
from gradleak.federated import Params, batch_gradient, local_update
from gradleak.models import check_twice_differentiable
from gradleak.threat import Reconstruction, ServerView

CHECK_EVERY = 10  # evaluations between looks at the loss (each look is a device sync on CUDA)


@dataclass
class Evaluation:
    """One evaluation of the matching loss at a point."""

    loss: torch.Tensor  # scalar, objective + weighted priors; differentiable unless compiled
    relative: torch.Tensor  # each update tensor's relative squared error, detached


@dataclass(frozen=True)
class Observation:
    """What the attacker knows about one observed update tensor beyond its values.

    The matching loss compares ``mask * (dummy - (1 - pull) clamp(dummy - target, -slack, slack))``
    with ``mask * target``: an entry with mask 0 is not matched (a pruned entry carries no
    information), and a dummy entry within ``slack`` of the observed one costs only ``pull^2``
    of its squared distance (the true value lies anywhere in a quantiser's bin; the small pull
    picks, among the points inside every bin, the one nearest the observed values, where a
    search would otherwise stop at the first it reaches). Balunović et al., ICLR 2022, Sec. 5:
    an attacker who knows the defense matches what the defense leaves, not what it replaced.
    """

    mask: torch.Tensor | float = 1.0  # per entry, broadcastable to the tensor: 1 matched, 0 ignored
    slack: torch.Tensor | float = 0.0  # per entry: half-width of the interval the true value lies in
    pull: float = 0.0  # 0: a dummy inside the slack costs nothing; 1: the slack is ignored

    def to(self, device: torch.device, dtype: torch.dtype) -> "Observation":
        def move(value: torch.Tensor | float) -> torch.Tensor | float:
            return value.to(device, dtype) if isinstance(value, torch.Tensor) else value

        return Observation(move(self.mask), move(self.slack), self.pull)

    def dummy(self, dummy: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The dummy entries as the loss compares them with ``mask * target``."""
        if isinstance(self.slack, torch.Tensor) or self.slack:
            dummy = dummy - (1 - self.pull) * torch.clamp(dummy - target, -self.slack, self.slack)
        return self.mask * dummy


@dataclass
class Candidate:
    """The best point one search found."""

    images: torch.Tensor  # normalised, (B, C, H, W)
    label_logits: torch.Tensor | None  # (B, classes) when labels were optimised
    loss: float
    score: float  # what starts are ranked by (lower is better)
    evaluations: int
    start: int


@dataclass
class Search:
    """What a search returns: the best candidate over all starts, and how it went."""

    best: Candidate
    history: list[dict[str, float]] = field(default_factory=list)
    evaluations: int = 0
    starts: int = 0
    seconds: float = 0.0
    solved: bool = False
    outcome: str = "budget"  # how the last start ended: solved, converged, stalled, diverged, budget


T = TypeVar("T")


class Best(Generic[T]):
    """The lowest-scoring point offered so far, the one record every search keeps per start and per problem.

    Only a strictly lower score replaces the point, so of equal scores the earliest stays; the
    first offer is always taken when no point is held.
    """

    def __init__(self, point: T | None = None, score: float = math.inf) -> None:
        self.point, self.score = point, score

    def offer(self, score: float, point: Callable[[], T]) -> bool:
        """Keep ``point()`` (built only when kept: it copies) if ``score`` beats the best so far."""
        if self.point is not None and not score < self.score:
            return False
        self.point, self.score = point(), score
        return True


def _differentiable_step(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor):
    """The client's step gradient, kept differentiable with respect to the dummy data."""
    params = {n: (p if p.requires_grad else p.requires_grad_(True)) for n, p in params.items()}
    return batch_gradient(model, params, x, y, create_graph=True)


class GradientMatching:
    """Find data whose update, computed as the client computes it, matches the observed one.

    ``labels``: fixed class indices (B,), or None to optimise one soft label per image jointly
    (DLG). ``objective``: ``l2`` or ``cosine``; ``layer_weights`` weight each update tensor.
    ``observations``: one :class:`Observation` per update tensor, what a defense-aware attack
    knows of each (which entries to match, how exactly); both objectives and the per-layer
    scores see the update through them.
    ``tv`` and ``bn`` weight the total-variation and BatchNorm-statistics priors. ``dtype``: the
    precision of the search (the model, the target and the unknowns); float64 lets L-BFGS go on
    where float32's rounding of the dummy gradient (relative 1e-7 per entry) stops it.
    ``compile``: evaluate the plain L2 loss of a FedSGD gradient (no priors, no layer weights)
    with the compiled function of :mod:`gradleak.attacks.functional`, about 3x cheaper per
    evaluation on LeNet-Zhu once compiled.
    """

    def __init__(
        self,
        view: ServerView,
        objective: str = "l2",
        labels: torch.Tensor | None = None,
        layer_weights: Sequence[float] | None = None,
        tv: float = 0.0,
        bn: float = 0.0,
        dtype: torch.dtype = torch.float32,
        compile: bool = False,
        observations: Sequence[Observation] | None = None,
    ) -> None:
        check_view(view)
        self.view = view
        self.objective_name = objective
        self.objective = OBJECTIVES.get(objective)
        self.device = view.update[0].device
        self.dtype = dtype
        self.model = copy.deepcopy(view.model).to(self.device, dtype).train(view.model_mode == "train")
        self.batch = view.num_examples
        self.shape = (self.batch, *view.input_shape)
        self.target = tuple(u.detach().to(dtype) for u in view.update)
        if observations is not None and len(observations) != len(self.target):
            raise GradleakError(
                f"{len(observations)} observations for an update of {len(self.target)} tensors; give one per tensor"
            )
        self.observations = None if observations is None else tuple(o.to(self.device, dtype) for o in observations)
        self._observed = self.target  # the values as seen; a slack is measured from them
        if self.observations is not None:
            self.target = tuple(o.mask * t for o, t in zip(self.observations, self.target))
        self._target_sq = torch.stack([t.square().sum() for t in self.target]).clamp_min(1e-30)
        if layer_weights is not None and len(layer_weights) != len(self.target):
            raise GradleakError(
                f"{len(layer_weights)} layer weights for an update of {len(self.target)} tensors; give one per tensor"
            )
        self.layer_weights = layer_weights
        self._weights = torch.tensor(layer_weights or [1.0] * len(self.target), device=self.device, dtype=dtype)
        if labels is not None:
            labels = labels.to(self.device).long()
            if labels.shape != (self.batch,):
                raise GradleakError(f"{len(labels)} labels for an update of {self.batch} examples")
        self.labels = labels
        self.tv = tv
        self.bn = BatchNormStatistics(self.model) if bn > 0 else None
        self.bn_weight = bn
        if self.bn is not None and not self.bn:
            raise GradleakError("the BatchNorm-statistics prior needs a model with BatchNorm layers; set bn=0")
        self.lower, self.upper = view.normalization.bounds(torch.zeros(1, device=self.device, dtype=dtype))
        self._params = {n: p.detach().clone().requires_grad_(p.requires_grad) for n, p in self.model.named_parameters()}
        self._functional: FunctionalMatching | None = None
        if compile:
            self._check_compilable()
            self._functional = FunctionalMatching(view, self.joint_labels, dtype, compile=True)
            self._flat_target = torch.cat([t.flatten() for t in self.target])[None]
            given = labels if labels is not None else torch.zeros(self.batch, dtype=torch.long, device=self.device)
            self._flat_labels = given[None]

    def _check_compilable(self) -> None:
        extras = {
            "a non-L2 objective": self.objective_name != "l2",
            "layer weights": self.layer_weights is not None,
            "a TV prior": bool(self.tv),
            "a BatchNorm prior": self.bn is not None,
            "observations (a defense-aware mask)": self.observations is not None,
        }
        if any(extras.values()):
            named = " or ".join(name for name, present in extras.items() if present)
            raise GradleakError(f"compile=true evaluates the plain L2 loss only, not {named}; drop compile=true")

    @property
    def compiled(self) -> bool:
        return self._functional is not None

    @property
    def joint_labels(self) -> bool:
        return self.labels is None

    # --- points ---------------------------------------------------------------------------

    def random_images(self, generator: torch.Generator, count: int = 1) -> torch.Tensor:
        """Standard-normal dummies in the normalised space (DLG, IG): (count, B, C, H, W).

        Drawn in float32 whatever the search's precision, so a seed gives the same start in both.
        """
        return torch.randn((count, *self.shape), generator=generator, device=self.device).to(self.dtype)

    def random_point(self, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
        """A flat start: normal images (std ``scale``), then normal label logits when labels are optimised."""
        parts = [scale * self.random_images(generator).flatten()]
        if self.joint_labels:
            logits = torch.randn(self.batch * self.view.num_classes, generator=generator, device=self.device)
            parts.append(logits.to(self.dtype))
        return torch.cat(parts)

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Flat unknowns -> images (B, C, H, W) and label logits (B, classes) or None."""
        pixels = math.prod(self.shape)
        images = z[:pixels].view(self.shape)
        logits = z[pixels:].view(self.batch, self.view.num_classes) if self.joint_labels else None
        return images, logits

    # --- the loss -------------------------------------------------------------------------

    def dummy_update(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The update the client would have sent for ``images`` and ``targets``, differentiably."""
        if self.view.local.algorithm == "fedsgd":
            return batch_gradient(self.model, self._params, images, targets, create_graph=True)
        return local_update(self.model, images, targets, self.view.local, step_gradient=_differentiable_step)

    def evaluate(self, images: torch.Tensor, logits: torch.Tensor | None = None) -> Evaluation:
        targets = self.labels if logits is None else F.softmax(logits, dim=-1)
        if self.bn is not None:
            self.bn.start()
        dummy = self.dummy_update(images, targets)
        if self.observations is not None:
            dummy = tuple(o.dummy(d, t) for o, d, t in zip(self.observations, dummy, self._observed))
        if self.objective_name == "l2":
            squared = torch.stack([(a - b).square().sum() for a, b in zip(dummy, self.target)])
            loss = (self._weights * squared).sum()
            relative = squared.detach() / self._target_sq
        else:
            loss = self.objective(dummy, self.target, self.layer_weights)
            relative = relative_errors([d.detach() for d in dummy], self.target)
        if self.tv:
            loss = loss + self.tv * total_variation(images)
        if self.bn is not None:
            loss = loss + self.bn_weight * self.bn.penalty()
        return Evaluation(loss, relative)

    def loss_and_grad(self, z: torch.Tensor) -> tuple[Evaluation, torch.Tensor]:
        if self._functional is not None:
            loss, squared, grad = self._functional(z.detach()[None], self._flat_target, self._flat_labels)
            return Evaluation(loss[0], squared[0] / self._target_sq), grad[0]
        z = z.detach().requires_grad_(True)
        evaluation = self.evaluate(*self.split(z))
        (grad,) = torch.autograd.grad(evaluation.loss, z)
        return evaluation, grad

    def reconstruction(self, search: Search, labels: torch.Tensor | None, **info) -> Reconstruction:
        """Denormalise the best candidate into a :class:`Reconstruction` with the search's record."""
        best = search.best
        if labels is None and best.label_logits is not None:
            labels = best.label_logits.argmax(dim=-1)
        return Reconstruction(
            images=self.view.normalization.denormalize(best.images.detach()).float().cpu(),
            labels=None if labels is None else labels.detach().cpu(),
            history=search.history,
            info={
                "loss": best.loss,
                "worst_layer_error": best.score,
                "evaluations": search.evaluations,
                "starts": search.starts,
                "best_start": best.start,
                "solved": search.solved,
                "outcome": search.outcome,
                "seconds": search.seconds,
                **info,
            },
        )


def check_view(view: ServerView) -> None:
    """What every matching attack needs beyond ServerView's own checks."""
    if len(view.input_shape) != 3:
        raise GradleakError(f"input_shape must be (channels, height, width), not {view.input_shape}")
    if view.kind == "delta" and view.local.learning_rate == 0:
        raise GradleakError("a FedAvg delta with learning rate 0 carries no gradient; nothing to invert")
    if all(float(u.abs().max()) == 0 for u in view.update if u.numel()):
        raise GradleakError("the update is all zeros (a converged model or a defense removed it); nothing to invert")
    check_twice_differentiable(view.model, view.input_shape, view.num_classes)


# --- precision ---------------------------------------------------------------------------


@contextlib.contextmanager
def full_precision(problem: GradientMatching) -> Iterator[None]:
    """Evaluate in full float32 precision: on CUDA, with TF32 off for convolutions and matmuls.

    TF32 (PyTorch's default for cuDNN convolutions) rounds inputs to 10 mantissa bits, which
    caps a reconstruction far below 40 dB. On the CPU nothing changes: threads and the oneDNN
    backend are the process owner's choice (:mod:`gradleak.compute`), never picked here.
    """
    if problem.device.type != "cuda":
        yield
        return
    # The only process-wide flags library code touches: CUDA's TF32 precision, a correctness need, restored after.
    previous = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous
