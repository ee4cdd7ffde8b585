"""The gradient-matching engine every optimisation attack shares.

An attack states a :class:`GradientMatching` problem (which distance, which priors, labels
fixed or optimised jointly) and hands it to one of two searches:

- :func:`lbfgs_search`: DLG's optimiser (Zhu et al. 2019: L-BFGS, lr 1, no line search) on one
  flat vector of unknowns, with the compact L-BFGS of :mod:`gradleak.attacks.lbfgs`. A start
  that stalls is abandoned for a fresh one, and the search stops as soon as every layer of
  the update is matched to ``tolerance``.
- :func:`adam_search`: Inverting Gradients' optimiser (Geiping et al. 2020, Sec. 4): Adam on
  the sign of the gradient, images clamped to the valid pixel box after each step, learning
  rate divided by 10 at 3/8, 5/8 and 7/8 of the iterations.

Both run several starts and keep the best by a score, and record a history.

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
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gradleak.attacks.functional import FunctionalMatching
from gradleak.attacks.lbfgs import BatchedLBFGS
from gradleak.attacks.objectives import OBJECTIVES, relative_errors
from gradleak.attacks.priors import BatchNormStatistics, total_variation
from gradleak.errors import GradleakError
from gradleak.federated import Params, batch_gradient, local_update
from gradleak.models import check_twice_differentiable
from gradleak.progress import progress
from gradleak.registry import Registry
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


# --- L-BFGS (DLG) ------------------------------------------------------------------------


@dataclass(frozen=True)
class LBFGSSettings:
    iterations: int = 6000  # evaluations per start; DLG: 300 L-BFGS steps of up to 20 evaluations
    restarts: int = 4  # fresh starts allowed when one stalls
    history: int = 100  # torch.optim.LBFGS's default history_size
    lr: float = 1.0  # DLG
    tolerance: float = 1e-7  # solved when every layer's relative squared error is below this
    init_scale: float = 1.0  # std of the random images of even starts (DLG: 1, in the normalised space); odd: 1
    max_step: float | None = None  # cap on a step's RMS entry (BatchedLBFGS); DLG: none
    storage: torch.dtype | None = None  # precision of the stored L-BFGS pairs (BatchedLBFGS); None: the unknowns'
    # A start is abandoned when its loss has not moved at all over 100 evaluations (saturated
    # sigmoids: a zero gradient), or, while it is still far from any solution (some layer's
    # relative error above 1e-3), its best loss has not halved over 600. L-BFGS without line
    # search is not monotone, so progress is judged by the best loss, not the latest. Calibrated
    # on 102 DLG runs on LeNet-Zhu (photos and faces, 5 seeds, 4,000 evaluations): the starts
    # that never got anywhere sat at errors of 0.7-200 when the halving rule caught them; the
    # slow ones, converging at 1e-4 or below (and needing up to ~8,000 evaluations), run on.
    stall_window: int = 600
    stall_factor: float = 0.5
    stall_above: float = 1e-3
    frozen_window: int = 100
    frozen_band: float = 1e-3
    # A start that stops moving with every layer below this has reached what the search's precision
    # allows (one face sat at 1.1e-7, just above the tolerance, at 62 dB): a restart cannot do better.
    floor: float = 1e-6
    # False runs every start to its budget whatever its progress, as DLG's 300 steps do: for
    # comparisons at a fixed budget, where a start given up at ~650 evaluations is not DLG at 10,000.
    # A start whose loss turns non-finite ends all the same (diverged): no point is left to go on from.
    abandon: bool = True

    def stalled(self, losses: Sequence[float], score: float) -> bool:
        """Whether to abandon a start with these losses (one per check, the last is now) and best score."""
        if not self.abandon:
            return False
        frozen = max(1, self.frozen_window // CHECK_EVERY)
        if len(losses) > frozen and max(losses[-1 - frozen :]) <= (1 + self.frozen_band) * min(losses[-1 - frozen :]):
            return True
        checks = max(1, self.stall_window // CHECK_EVERY)
        if score > self.stall_above and len(losses) > checks:
            return min(losses) > self.stall_factor * min(losses[: -checks])
        return False


def default_history(device: torch.device) -> int:
    """L-BFGS memory: 100 pairs on the CPU, 400 on a GPU.

    More pairs cut the evaluations DLG needs (400 instead of 100: about 1.6x fewer on photos),
    but every step reads the whole history twice: 400 pairs of 3,082 floats are 10 MB, beyond
    the caches of a small CPU, where the step then costs more than the evaluations it saves.
    """
    return 400 if device.type == "cuda" else 100


def lbfgs_search(
    problem: GradientMatching,
    settings: LBFGSSettings,
    generator: torch.Generator,
    desc: str = "L-BFGS",
    on_check: Callable[[int, torch.Tensor], None] | None = None,
    first: torch.Tensor | None = None,
) -> Search:
    """Minimise the matching loss with L-BFGS from fresh starts until one solves the problem.

    ``on_check(evaluations, images)`` sees the current normalised images at every check (every
    ``CHECK_EVERY`` evaluations), for live displays and for benchmarks that watch the truth.
    ``first`` (flat unknowns) replaces the first random start, e.g. an analytic reconstruction.
    """
    started = time.perf_counter()
    search: Search | None = None
    history: list[dict[str, float]] = []
    total = 0
    z0 = problem.random_point(generator, settings.init_scale) if first is None else first
    with full_precision(problem), progress(total=settings.iterations * settings.restarts, desc=desc) as bar:
        for start in range(settings.restarts):
            # Odd starts draw from DLG's own N(0, 1): a case that defeats starts near the mean
            # (one photo in eight here) usually falls to a standard-normal one, and vice versa.
            z = z0 if start == 0 else problem.random_point(generator, settings.init_scale if start % 2 == 0 else 1.0)
            candidate, evaluations, outcome = _lbfgs_start(problem, z, settings, start, history, total, on_check)
            total += evaluations
            bar.update(evaluations)
            if search is None or candidate.score < search.best.score:
                search = Search(best=candidate)
            if outcome in ("solved", "converged"):
                break
    search.solved, search.outcome = outcome == "solved", outcome
    search.history, search.evaluations, search.starts = history, total, start + 1
    search.seconds = time.perf_counter() - started
    return search


def _lbfgs_start(
    problem: GradientMatching,
    z: torch.Tensor,
    settings: LBFGSSettings,
    start: int,
    history: list[dict[str, float]],
    offset: int,
    on_check: Callable[[int, torch.Tensor], None] | None,
) -> tuple[Candidate, int, str]:
    """One start: ``solved`` (every layer below tolerance), ``converged`` (stalled or out of
    budget below ``floor``), ``stalled``, ``diverged`` or ``budget`` (iterations used up)."""
    optimizer = BatchedLBFGS(
        z[None], history=settings.history, lr=settings.lr, max_step=settings.max_step, compile=problem.compiled,
        storage=settings.storage,
    )
    images, logits = problem.split(z)
    best = Candidate(images.clone(), None if logits is None else logits.clone(), math.inf, math.inf, 0, start)
    losses: list[float] = []  # at every check
    outcome = "budget"
    for evaluation in range(1, settings.iterations + 1):
        point = optimizer.z[0]
        result, grad = problem.loss_and_grad(point)
        if evaluation % CHECK_EVERY == 0 or evaluation == 1:
            loss = float(result.loss.detach())
            score = float(result.relative.max())
            if not math.isfinite(loss):
                outcome = "diverged"
                break
            history.append({"iteration": offset + evaluation, "start": start, "loss": loss, "score": score})
            if on_check is not None:
                on_check(offset + evaluation, problem.split(point.detach())[0])
            if score < best.score:
                images, logits = problem.split(point.detach())
                best = Candidate(images.clone(), None if logits is None else logits.clone(), loss, score, evaluation, start)
            if score < settings.tolerance:
                return best, evaluation, "solved"
            losses.append(loss)
            if settings.stalled(losses, best.score):
                outcome = "stalled"
                break
        optimizer.tell(grad[None])
    # Stopped moving, or still creeping down when the budget ends (the darkest photo: 42 dB at
    # 1.7e-7 after 10,000 evaluations), below the floor: a fresh start cannot get further.
    if outcome in ("stalled", "budget") and best.score < settings.floor:
        outcome = "converged"
    return best, evaluation, outcome


# --- Adam on signed gradients (Inverting Gradients) -----------------------------------------


@dataclass(frozen=True)
class AdamSettings:
    iterations: int = 4800  # IG: 4,800 (CIFAR-10) to 24,000 iterations
    restarts: int = 1  # IG: several; each costs the full budget
    lr: float = 0.1  # IG
    signed: bool = True  # IG: Adam on the sign of the gradient
    boxed: bool = True  # IG: clamp to the valid pixel range after each step
    decay: bool = True  # IG: x0.1 at 3/8, 5/8, 7/8 of the iterations
    init_scale: float = 1.0  # std of the random starts in the normalised space (IG: 1)
    combine: str = "best"  # IG: the start with the lowest final objective; or "mean" (see COMBINE)


Combiner = Callable[[torch.Tensor, list[float]], tuple[torch.Tensor, int]]  # (finals, losses) -> (images, start)

COMBINE: Registry[Combiner] = Registry("way to combine the starts")


@COMBINE.register("best")
def _lowest_final_loss(finals: torch.Tensor, losses: list[float]) -> tuple[torch.Tensor, int]:
    """Inverting Gradients: the start whose final objective is lowest."""
    best = min(range(len(finals)), key=lambda r: losses[r] if math.isfinite(losses[r]) else math.inf)
    return finals[best], best


@COMBINE.register("mean")
def _pixelwise_mean(finals: torch.Tensor, losses: list[float]) -> tuple[torch.Tensor, int]:
    """The pixel-wise mean of all starts (start -1), GradInversion's group consensus (eq. 8) taken as the answer.

    Where the starts end in different near-solutions, their errors partly cancel: on the
    untrained ConvNet's photo the mean of 8 IG starts reaches 15.4-15.6 dB over three seeds,
    0.3-0.8 dB above the lowest-loss start and 0.8-0.9 dB above the starts' average PSNR,
    while its own objective is not the lowest (docs/benchmarks.md).
    """
    return finals.mean(0), -1


def adam_search(
    problem: GradientMatching,
    settings: AdamSettings,
    generator: torch.Generator,
    desc: str = "Adam",
    images: torch.Tensor | None = None,
    regulariser: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Search:
    """Minimise the matching loss (plus priors) with Adam from ``restarts`` starts, combined by ``settings.combine``.

    ``images`` (restarts, B, C, H, W) replaces the random starts; ``regulariser`` adds a term
    on all starts' images together (group consistency).
    """
    with full_precision(problem):
        return _adam(problem, settings, generator, desc, images, regulariser)


def _adam(
    problem: GradientMatching,
    settings: AdamSettings,
    generator: torch.Generator,
    desc: str,
    images: torch.Tensor | None,
    regulariser: Callable[[torch.Tensor], torch.Tensor] | None,
) -> Search:
    started = time.perf_counter()
    combine = COMBINE.get(settings.combine)
    x = images.clone() if images is not None else settings.init_scale * problem.random_images(generator, settings.restarts)
    x.requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=settings.lr)
    milestones = [int(settings.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)] if settings.decay else []
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    history: list[dict[str, float]] = []
    for iteration in progress(range(1, settings.iterations + 1), desc=desc):
        optimizer.zero_grad(set_to_none=True)
        evaluations = [problem.evaluate(x[r]) for r in range(len(x))]
        losses = torch.stack([e.loss for e in evaluations])
        total = losses.sum() + (regulariser(x) if regulariser is not None else 0)
        (grad,) = torch.autograd.grad(total, x)
        x.grad = grad.sign() if settings.signed else grad
        optimizer.step()
        scheduler.step()
        if settings.boxed:
            with torch.no_grad():
                x.copy_(torch.maximum(torch.minimum(x, problem.upper), problem.lower))
        if iteration % CHECK_EVERY == 0 or iteration == settings.iterations:
            history.append({"iteration": iteration, "loss": float(losses.detach().min())})
    # The loss above was taken before the last step; score every start where it ended.
    finals = x.detach()
    ends = [problem.evaluate(finals[r]) for r in range(len(finals))]
    images, start = combine(finals, [float(e.loss.detach()) for e in ends])
    end = ends[start] if start >= 0 else problem.evaluate(images)  # a mean is none of the starts
    candidate = Candidate(images, None, float(end.loss.detach()), float(end.relative.max()), settings.iterations, start)
    return Search(
        best=candidate,
        history=history,
        evaluations=settings.iterations * len(x),
        starts=len(x),
        seconds=time.perf_counter() - started,
    )
