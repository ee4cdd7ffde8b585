"""The server of a round: what it sends each client, what it keeps, how it reads what comes back.

A leaf module holding the registry (``SERVERS``), so a server kind registers itself by being
imported. A server builds the model each client receives (possibly a different one per client,
:meth:`Server.models`), keeps ``secrets`` of what it planted, and turns the update it observed
into the one it hands the attacker (:meth:`Server.observe`). The attacker receives the
:class:`~gradleak.threat.ServerView` with those secrets (``view.secrets``), never the truth.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from gradleak.errors import GradleakError
from gradleak.gradients import Update
from gradleak.registry import Registry
from gradleak.spec import make_config, parse_spec


@dataclass(frozen=True)
class ServerContext:
    """What the server knows when it prepares a round: the input space and public data."""

    input_shape: tuple[int, int, int]
    num_classes: int
    public: torch.Tensor | None = None  # normalised images no client holds (a disjoint split)


class Server:
    """Base class and the honest server: every client receives the global model unchanged.

    Subclasses set ``name`` and ``Config`` (a dataclass of the paper's defaults).
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    target: int | None = None  # the one client whose data the view aims at (None: the usual victim/cohort)
    needs_public: ClassVar[bool] = False  # whether ``models`` uses the context's public data

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()
        self.secrets: dict[str, Any] = {}

    def models(self, global_model: nn.Module, num_clients: int, context: ServerContext) -> list[nn.Module]:
        """The model each of ``num_clients`` clients receives (all the same object when honest)."""
        return [global_model] * num_clients

    def observe(self, model: nn.Module, update: Update, weights: Sequence[int]) -> tuple[nn.Module, Update]:
        """The model and update handed to the attacker, from the model sent and the update observed."""
        return model, update

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True)
class HonestConfig:
    """The honest server has no settings."""


SERVERS: Registry[type[Server]] = Registry("server")


def register(cls: type[Server]) -> type[Server]:
    """Class decorator: add a server kind to the registry under its ``name``."""
    return SERVERS.register(cls.name)(cls)


@register
class HonestServer(Server):
    """Honest but curious: sends the global model to everyone and only reads what comes back."""

    name = "honest"
    Config = HonestConfig


def build_server(spec: str) -> Server:
    """A server from ``name`` or ``name:key=value,...`` (e.g. ``inconsistent:target=0``)."""
    parsed = parse_spec(spec)
    cls = SERVERS.get(parsed.name)
    return cls(make_config(cls.Config, parsed.params, f"server {parsed.name!r}"))


def model_digest(model: nn.Module) -> bytes:
    """SHA-256 over the architecture and every parameter and buffer, by name: what a client commits to."""
    digest = hashlib.sha256(b"gradleak/model" + repr(model).encode())
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(name.encode() + str(data.dtype).encode() + str(tuple(data.shape)).encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.digest()


def private_copy(model: nn.Module) -> nn.Module:
    """A copy the server may rewrite without touching the global model."""
    clone = copy.deepcopy(model)
    for p in clone.parameters():
        p.grad = None
    return clone


def require_clients(num_clients: int, target: int) -> None:
    if not 0 <= target < num_clients:
        raise GradleakError(f"target {target} is not one of the {num_clients} clients; pick 0..{num_clients - 1}")
