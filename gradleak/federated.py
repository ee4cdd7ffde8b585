"""The victim side of federated learning: clients, local training, and one round.

The loss, parameter naming and batch gradient live in :mod:`gradleak.gradients` (below both this
module and the defenses) and are re-exported here. Local training is functional
(``torch.func.functional_call`` on a parameter dict), so an attack can unroll exactly the same
steps with ``create_graph=True``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from gradleak.defenses import ClientContext, Defense, DefenseStack, PlainAggregation, Update, noise
from gradleak.errors import GradleakError, RoundStopped
from gradleak.gradients import Params, batch_gradient, loss_fn, trainable_names
from gradleak.servers import Server, ServerContext, build_server, model_digest
from gradleak.threat import LocalTraining, Normalization, ServerView, Truth

__all__ = [
    "Client", "Params", "Round", "batch_gradient", "local_update", "loss_fn", "minibatches", "noise_generator",
    "poisson_cohort", "run_round", "sized_aggregator", "split_clients", "trainable_names",
]
StepGradient = Callable[[nn.Module, Params, torch.Tensor, torch.Tensor], Update]


def minibatches(num_examples: int, local: LocalTraining) -> list[slice]:
    """The slice of local data each step uses: consecutive mini-batches, cycling in order."""
    size = local.batch_size or num_examples
    steps_per_epoch = max(1, -(-num_examples // size))
    slices = []
    for step in range(local.local_steps):
        start = (step % steps_per_epoch) * size
        slices.append(slice(start, min(start + size, num_examples)))
    return slices


def local_update(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    local: LocalTraining,
    step_gradient: StepGradient | None = None,
    samples_lot: bool = False,
) -> Update:
    """A client's upload: the gradient (FedSGD) or ``w_after - w_before`` after SGD steps (FedAvg).

    ``x`` is already normalised. ``step_gradient`` replaces each step's gradient (DP-SGD); with
    ``samples_lot`` every step is handed the whole local data, from which it samples its own lot.
    """
    step_gradient = step_gradient or batch_gradient
    names = trainable_names(model)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    if local.algorithm == "fedsgd":
        return tuple(step_gradient(model, params, x, y))
    start = {n: params[n] for n in names}
    pieces = [slice(None)] * local.local_steps if samples_lot else minibatches(len(x), local)
    for piece in pieces:
        grads = step_gradient(model, params, x[piece], y[piece])
        params = {**params, **{n: params[n] - local.learning_rate * g for n, g in zip(names, grads)}}
    return tuple(params[n] - start[n] for n in names)


@dataclass
class Client:
    """One participant with its own data slice: images in [0, 1] and labels."""

    client_id: int
    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels) or len(self.images) == 0:
            raise GradleakError(f"client {self.client_id} needs as many labels as images, and at least one")

    def __len__(self) -> int:
        return len(self.images)

    def receive(self, received: nn.Module, declared: nn.Module, normalization: Normalization, defenses: DefenseStack) -> str | None:
        """Run the receive-stage checks on the model the server sent: why the client refuses it, or None."""
        checks = defenses.at("receive")
        if not checks:
            return None
        x = normalization.normalize(self.images.to(next(received.parameters()).device))
        for defense in checks:
            reason = defense.on_receive(received, declared, x)
            if reason is not None:
                return f"{defense.name}: {reason}"
        return None

    def upload(
        self,
        global_model: nn.Module,
        normalization: Normalization,
        local: LocalTraining,
        defenses: DefenseStack,
        generator: torch.Generator,
        model_mode: str = "train",
    ) -> Update:
        """Train on a private copy of the global model and return the (defended) update."""
        model = copy.deepcopy(global_model).train(model_mode == "train")
        device = next(model.parameters()).device
        x = normalization.normalize(self.images.to(device))
        y = self.labels.to(device)
        step = next(iter(defenses.at("step")), None)
        step_gradient = (lambda m, p, xb, yb: step.step_gradient(m, p, xb, yb, generator)) if step else None
        update = local_update(model, x, y, local, step_gradient, getattr(step, "samples_lot", False))
        context = ClientContext(self.client_id, len(self), generator)
        for defense in defenses.at("client"):
            update = defense.on_upload(update, context)
        return tuple(u.detach() for u in update)


def split_clients(images: torch.Tensor, labels: torch.Tensor, num_clients: int) -> list[Client]:
    """Give each of ``num_clients`` clients a consecutive, equal slice of the data."""
    if num_clients < 1 or len(images) < num_clients:
        raise GradleakError(f"cannot split {len(images)} examples over {num_clients} clients")
    size = len(images) // num_clients
    return [Client(k, images[k * size : (k + 1) * size], labels[k * size : (k + 1) * size]) for k in range(num_clients)]


def noise_generator(seed: int | None = None, device: torch.device | str = "cpu") -> torch.Generator:
    """The round's randomness: a :class:`~gradleak.defenses.noise.PrivateGenerator` (DP draws from a
    CSPRNG), or, when an experiment fixes ``seed``, a seeded torch generator that is not private."""
    if seed is None:
        return noise.PrivateGenerator(device)
    return torch.Generator(device=device).manual_seed(seed)


def poisson_cohort(population: int, rate: float, generator: torch.Generator) -> list[int]:
    """Client sampling as the accountant assumes it: each of ``population`` clients is in the
    round independently with probability ``rate`` (McMahan et al., ICLR 2018, Alg. 1)."""
    return torch.nonzero(noise.poisson_mask(population, rate, generator)).flatten().tolist()


def sized_aggregator(defenses: DefenseStack) -> Defense:
    """The stack's aggregator, its fixed-point range widened to hold what client-stage defenses
    upload (``upload_range``: distributed DP's noise), so the aggregation never clips the noise."""
    aggregator = defenses.aggregator
    bounds = [d.upload_range for d in defenses.at("client") if getattr(d, "upload_range", None) is not None]
    if bounds and hasattr(aggregator, "sized_for"):
        return aggregator.sized_for(max(bounds))
    return aggregator


@dataclass(frozen=True, eq=False)
class Round:
    """One round's outcome: the server's view, the truth kept apart, what is released, costs, and
    whether its randomness came from a seed (``noise_seeded``: reproducible, and not private)."""

    view: ServerView
    truth: Truth
    released: Update
    noise_seeded: bool
    cost: dict[str, float] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)  # client id -> why it refused the model it received


def run_round(
    global_model: nn.Module,
    normalization: Normalization,
    clients: Sequence[Client],
    num_classes: int,
    local: LocalTraining = LocalTraining(),
    defenses: DefenseStack = DefenseStack(),
    victim: int = 0,
    known_labels: bool = False,
    model_mode: str = "train",
    noise_seed: int | None = None,
    server: Server | None = None,
    public: torch.Tensor | None = None,
) -> Round:
    """Run one round and split it into what the server sees and the truth.

    ``server`` (default honest) builds the model each client receives; a receive-stage defense
    (``vet``) lets a client refuse it, and then the client uploads nothing (``Round.refused`` says
    why). ``public`` are images in [0, 1] that no client holds, which a malicious server may use
    to prepare its model. Under plain aggregation the server sees each upload, so the view is
    client ``victim``'s update and the truth its data. When the aggregation hides individual
    uploads (secure aggregation) the view is only the aggregate, and the truth is the data of the clients in it
    (``Aggregation.contributors``: all of them, or the survivors when some dropped out), unless
    the server aims at one ``target`` client, whose data is then the truth. The aggregation gets
    the digest of the model each client received (``secagg:bind_model`` aborts the round when
    they differ).
    """
    if not clients:
        raise GradleakError("a round needs at least one client")
    if not 0 <= victim < len(clients):
        raise GradleakError(f"victim {victim} is not one of the {len(clients)} clients")
    device = next(global_model.parameters()).device
    generator = noise_generator(noise_seed, device)
    server = server or build_server("honest")
    input_shape = tuple(clients[0].images.shape[1:])
    context = ServerContext(input_shape, num_classes, None if public is None else normalization.normalize(public.to(device)))
    sent = server.models(global_model, len(clients), context)
    reasons = [c.receive(model, global_model, normalization, defenses) for c, model in zip(clients, sent)]
    refused = {clients[k].client_id: r for k, r in enumerate(reasons) if r is not None}
    kept = [k for k, r in enumerate(reasons) if r is None]
    aggregator = sized_aggregator(defenses)
    _require_enough(kept, refused, clients, victim, aggregator)
    distinct = {id(sent[k]): sent[k] for k in kept}
    digest_of = {key: model_digest(model) for key, model in distinct.items()}  # once per distinct model sent
    uploads = [clients[k].upload(sent[k], normalization, local, defenses, generator, model_mode) for k in kept]
    weights = [len(clients[k]) for k in kept]
    aggregation = aggregator.aggregate(uploads, weights, generator, [digest_of[id(sent[k])] for k in kept])
    released = aggregation.aggregate
    # Server-stage DP noise is sized for the clients actually in the aggregate (dropouts leave it).
    contributing = len(kept) if aggregation.contributors is None else len(aggregation.contributors)
    for defense in defenses.at("server"):
        released = defense.on_aggregate(released, contributing, generator)
    # positions in the round's clients of those in the aggregate (refusals and dropouts leave it)
    contributors = kept if aggregation.contributors is None else [kept[i] for i in aggregation.contributors]

    if aggregation.individual:
        seen = [clients[victim]]
    elif server.target is not None:
        seen = [clients[server.target]]
    else:  # only the contributors' data is in the aggregate
        seen = [clients[i] for i in contributors]
    truth = Truth(
        images=torch.cat([c.images for c in seen]),
        labels=torch.cat([c.labels for c in seen]),
        client_ids=tuple(c.client_id for c in seen),
    )
    watched = victim if aggregation.individual else (server.target or 0)
    server_model = copy.deepcopy(sent[watched])
    for p in server_model.parameters():
        p.grad = None
    if aggregation.individual:
        observed = uploads[kept.index(victim)]
    else:  # the server reads the aggregate knowing who is in it and with how many examples
        in_sum = [len(clients[k]) if k in contributors else 0 for k in range(len(clients))]
        server_model, observed = server.observe(server_model, aggregation.aggregate, in_sum)
    view = ServerView(
        model=server_model,
        normalization=normalization,
        input_shape=input_shape,
        num_classes=num_classes,
        update=observed,
        num_examples=len(truth.labels),
        local=local,
        model_mode=model_mode,
        cohort_size=len(contributors),
        aggregate=not aggregation.individual,
        masked_uploads=() if aggregation.individual else aggregation.masked_uploads,
        known_labels=truth.labels.to(device) if known_labels else None,
        defenses=defenses.names(),
        server=server.describe(),
        secrets=dict(server.secrets),
    )
    seeded = not noise.is_private(generator)
    return Round(view=view, truth=truth, released=released, noise_seeded=seeded, cost=aggregation.cost, refused=refused)


def _require_enough(kept: list[int], refused: dict[int, str], clients: Sequence[Client], victim: int, aggregator: Defense) -> None:
    """A round needs uploads: two or more under secure aggregation (one alone would be in the clear)."""
    if not refused:
        return
    first, reason = next(iter(refused.items()))
    why = f"client {first}: {reason}" + (f"; {len(refused) - 1} more" if len(refused) > 1 else "")
    secure = not isinstance(aggregator, PlainAggregation)
    if len(kept) < (2 if secure else 1):
        left = "none" if not kept else "only client " + str(clients[kept[0]].client_id)
        raise RoundStopped(
            f"the round cannot aggregate: {len(refused)} of {len(clients)} clients refused the model they received ({why}), {left} left"
        )
    if not secure and victim not in kept:
        raise RoundStopped(f"victim {victim} refused the model it received, so it uploaded nothing ({why}); pick another victim")
