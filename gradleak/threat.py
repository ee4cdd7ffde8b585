"""The threat model in three types: what the server sees, what it must not, what it guesses.

- :class:`ServerView` is everything an honest-but-curious server holds after a round: the
  model it sent, the update it observed (one client's upload, or only the aggregate under
  secure aggregation), and what the protocol reveals.
- :class:`Truth` is the client data behind the update. Attacks never receive it; only
  ``gradleak.eval`` holds both, to score them.
- :class:`Reconstruction` is an attack's answer: images in [0, 1] and labels.

An attack is ``reconstruct(view: ServerView) -> Reconstruction``: reading that signature is
enough to check that it cannot cheat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from gradleak.errors import GradleakError

UpdateKind = Literal["gradient", "delta"]


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std``: the model's input space. Public: it is part of the model."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, images: torch.Tensor) -> "Normalization":
        """The per-channel statistics of ``images`` (N, C, H, W)."""
        mean = images.mean(dim=(0, 2, 3))
        std = images.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return cls(tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std))

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, len(self.mean), 1, 1)
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels -> model input."""
        mean, std = self._stats(images)
        return (images - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input -> [0, 1] pixels (clamped)."""
        mean, std = self._stats(x)
        return (x * std + mean).clamp(0, 1)

    def bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The valid pixel box [0, 1] expressed in the normalised space, per channel."""
        mean, std = self._stats(like)
        return -mean / std, (1 - mean) / std


@dataclass(frozen=True)
class LocalTraining:
    """How a client turns its data into an upload; fixed by the FL configuration, so public.

    FedSGD is one full-batch gradient (``local_steps=1``, kind ``"gradient"``). FedAvg runs
    ``local_steps`` SGD steps with ``learning_rate`` on consecutive mini-batches of
    ``batch_size`` (cycling through the data in order) and uploads the weight delta.
    """

    algorithm: Literal["fedsgd", "fedavg"] = "fedsgd"
    local_steps: int = 1
    learning_rate: float = 0.1
    batch_size: int | None = None  # None: the whole local data every step

    def __post_init__(self) -> None:
        if self.local_steps < 1:
            raise GradleakError(f"local_steps must be at least 1, not {self.local_steps}")
        if self.batch_size is not None and self.batch_size < 1:
            raise GradleakError(f"batch_size must be at least 1, not {self.batch_size}")
        if self.algorithm == "fedsgd" and self.local_steps != 1:
            raise GradleakError("FedSGD uploads one gradient; use algorithm='fedavg' for several local steps")

    @property
    def kind(self) -> UpdateKind:
        return "gradient" if self.algorithm == "fedsgd" else "delta"


@dataclass(frozen=True, eq=False)
class ServerView:
    """What the server holds after a round. Immutable; attacks treat ``model`` as read-only.

    ``update`` is aligned with ``[p for p in model.parameters() if p.requires_grad]``: a
    gradient (FedSGD) or a weight delta ``w_after - w_before`` (FedAvg), either one client's
    upload or, when ``aggregate`` is true, only the example-weighted mean over the cohort.
    ``known_labels`` is side information, present only when the experiment grants it.
    ``secrets`` is what a malicious server planted (it built the model, so it knows them).
    """

    model: nn.Module
    normalization: Normalization
    input_shape: tuple[int, int, int]
    num_classes: int
    update: tuple[torch.Tensor, ...]
    num_examples: int
    local: LocalTraining = field(default_factory=LocalTraining)
    model_mode: Literal["train", "eval"] = "train"
    cohort_size: int = 1
    aggregate: bool = False
    masked_uploads: tuple[Any, ...] = ()
    known_labels: torch.Tensor | None = None
    defenses: tuple[str, ...] = ()
    server: str = "honest"  # the server's behaviour (a spec); malicious servers plant what ``secrets`` records
    secrets: dict[str, Any] = field(default_factory=dict)  # what the server planted in the model it sent
    releases: tuple[Any, ...] = ()  # earlier rounds' releases the server holds (gradleak.session.Release), oldest first

    def __post_init__(self) -> None:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if len(self.update) != len(params):
            raise GradleakError(
                f"the update has {len(self.update)} tensors but the model has {len(params)} "
                "trainable parameters; pass one tensor per parameter, in model.parameters() order"
            )
        for index, (tensor, param) in enumerate(zip(self.update, params)):
            if tuple(tensor.shape) != tuple(param.shape):
                raise GradleakError(
                    f"update tensor {index} has shape {tuple(tensor.shape)} but its parameter has "
                    f"{tuple(param.shape)}; the update does not belong to this model"
                )
            if not torch.isfinite(tensor).all():
                raise GradleakError(f"update tensor {index} contains NaN or infinite values; nothing to invert")
        if self.num_examples < 1:
            raise GradleakError(f"num_examples must be at least 1, not {self.num_examples}")
        if self.known_labels is not None:
            labels = self.known_labels
            if labels.ndim != 1 or len(labels) != self.num_examples:
                raise GradleakError(
                    f"known_labels must be a vector of {self.num_examples} labels, not shape {tuple(labels.shape)}"
                )
            if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise GradleakError(
                    f"known label {int(labels.max() if labels.max() >= self.num_classes else labels.min())} "
                    f"is out of range for {self.num_classes} classes"
                )

    @property
    def kind(self) -> UpdateKind:
        return self.local.kind

    @property
    def parameters(self) -> dict[str, torch.Tensor]:
        """The global weights as sent, detached, by name (for ``torch.func.functional_call``)."""
        return {name: p.detach() for name, p in self.model.named_parameters()}


@dataclass(frozen=True, eq=False)
class Truth:
    """The data behind an update: images in [0, 1] (B, C, H, W) and labels (B,). Never given to an attack."""

    images: torch.Tensor
    labels: torch.Tensor
    client_ids: tuple[int, ...] = ()


@dataclass(eq=False)
class Reconstruction:
    """An attack's answer: images in [0, 1] (B, C, H, W), labels (B,) or None, and how it got there."""

    images: torch.Tensor
    labels: torch.Tensor | None
    history: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"reconstructed images must be (B, C, H, W), not {tuple(self.images.shape)}")
        if self.images.numel() and not (0 <= float(self.images.min()) and float(self.images.max()) <= 1):
            raise ValueError("reconstructed images must lie in [0, 1]; denormalise and clamp first")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError("one label per reconstructed image")
