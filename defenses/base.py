"""What a defense is, and where in a round it acts.

A defense declares its ``stage``; a round applies a stack of defenses in stage order:

``receive``      on the model a client received, before training: a check that may refuse it
                 (vetting against the declared architecture); a refusing client uploads nothing;
``step``         inside local training, replacing each step's gradient (DP-SGD's per-example
                 clipping and noise);
``client``       on a client's finished update before upload (clipping for DP-FedAvg, pruning,
                 quantisation, distributed noise);
``aggregation``  how the server combines uploads (plain sum, or secure aggregation, after which
                 the server holds only the aggregate);
``server``       on the aggregate the server releases (central DP noise). An honest-but-curious
                 server sees the uploads before this stage, so it never protects against the
                 server itself, only against whoever receives the released model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Sequence

import torch
from torch import nn

Stage = Literal["receive", "step", "client", "aggregation", "server"]
STAGE_ORDER: tuple[Stage, ...] = ("receive", "step", "client", "aggregation", "server")

Update = tuple[torch.Tensor, ...]


@dataclass
class ClientContext:
    """What a client-side defense may use: the client's identity, data size, and a noise source."""

    client_id: int
    num_examples: int
    generator: torch.Generator


@dataclass
class Aggregation:
    """The result of combining uploads.

    ``aggregate`` is the example-weighted mean of the uploads. ``individual`` says whether the
    server also saw each upload in the clear (plain aggregation) or only ``masked_uploads``
    that reveal nothing alone (secure aggregation). ``cost`` holds bytes and seconds.
    ``contributors`` are the positions (in ``uploads``) of the clients whose data is in the
    aggregate; ``None`` means all of them (secure aggregation leaves out clients that dropped).
    """

    aggregate: Update
    individual: bool
    masked_uploads: tuple[Any, ...] = ()
    cost: dict[str, float] = field(default_factory=dict)
    contributors: tuple[int, ...] | None = None


class Defense:
    """Base class: every hook is the identity; a defense overrides the one for its ``stage``.

    Subclasses set ``name``, ``stage`` and ``Config`` (a dataclass with the paper's defaults) and
    take an instance of ``Config`` in ``__init__``.
    """

    name: ClassVar[str]
    stage: ClassVar[Stage]
    Config: ClassVar[type]

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @property
    def stages(self) -> tuple[Stage, ...]:
        """Every stage the defense acts at: ``(stage,)``, or more for a mechanism split across a
        round (DP-FedAvg clips at ``client`` and adds noise at ``server``)."""
        return (self.stage,)

    def on_receive(self, received: nn.Module, declared: nn.Module, public_x: torch.Tensor) -> str | None:
        """Stage ``receive``: why the client refuses the model it ``received`` (checked against the
        ``declared`` architecture, on normalised inputs ``public_x``), or ``None`` to accept it."""
        return None

    def step_gradient(
        self, model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
        generator: torch.Generator,
    ) -> Update:
        """Stage ``step``: the gradient one local step uses (default: the plain batch gradient)."""
        raise NotImplementedError

    def on_upload(self, update: Update, context: ClientContext) -> Update:
        """Stage ``client``: transform a finished update before it leaves the client."""
        return update

    def aggregate(
        self, uploads: Sequence[Update], weights: Sequence[int], generator: torch.Generator,
        digests: Sequence[bytes] | None = None,
    ) -> Aggregation:
        """Stage ``aggregation``: combine the uploads. ``digests`` are the digests of the models the
        clients received (one per upload), for an aggregation that binds them into its protocol."""
        raise NotImplementedError

    def on_aggregate(self, aggregate: Update, num_clients: int, generator: torch.Generator) -> Update:
        """Stage ``server``: transform the aggregate before release."""
        return aggregate

    def release_scale(self, num_clients: int) -> float:
        """Stage ``server``: the factor ``on_aggregate`` multiplies the mean of ``num_clients`` by, noise aside."""
        return 1.0

    def epsilon(self) -> float | None:
        """The (epsilon, delta)-DP guarantee this defense gives, if it is a DP mechanism."""
        return None

    def describe(self) -> str:
        changed = {
            f.name: getattr(self.config, f.name)
            for f in dataclasses.fields(self.config)
            if getattr(self.config, f.name) != f.default
        }
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in changed.items()) if changed else "")
