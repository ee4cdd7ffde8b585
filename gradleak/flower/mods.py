"""Any gradleak client-stage defense as a Flower client Mod.

A Mod wraps a ``ClientApp``: ``mod(message, context, call_next) -> reply``. On a training
message the client's update is the reply's arrays minus the arrays it received (the FedAvg
delta ``w_after - w_before``, McMahan et al., AISTATS 2017, Alg. 1); the Mod applies the
defense's ``on_upload`` to that update, as gradleak's own clients do
(:meth:`gradleak.federated.Client.upload`), and writes ``w_before + defended update`` back.
Both Flower APIs work: the message API's ``"arrays"`` record and the legacy ``NumPyClient``'s
``fitins``/``fitres`` parameters (one array record each way).

Noise is drawn from a CSPRNG unless ``seed`` is given (experiments only: seeded noise is not
private). Defenses that act inside local training (DP-SGD, Soteria) or in aggregation
(secure aggregation) cannot be a reply-side Mod and are refused. :func:`vet_mod` is the
receive-stage check: it loads the received arrays into the declared model and, when ``vet``
refuses them, replies with an error instead of training.
"""

from __future__ import annotations

import copy
import logging
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MessageType, RecordDict
from flwr.clientapp.typing import ClientAppCallable, Mod
from torch import nn

from gradleak.defenses import ClientContext, Defense, build_defense
from gradleak.errors import GradleakError
from gradleak.federated import noise_generator

NUM_EXAMPLES_KEYS = ("num-examples", "fitres.num_examples")  # message API metrics, legacy FitRes
REFUSED = "gradleak.refused"  # the node's state record: the message group (round) it refused
REFUSED_CODE = 4001  # the Error code of a refusal (Flower's own codes are below 1000)
log = logging.getLogger(__name__)


def defense_mod(defense: str | Defense, seed: int | None = None) -> Mod:
    """A Mod applying ``defense`` (a spec such as ``"prune:ratio=0.9"``, or a built defense) to each update."""
    defense = build_defense(defense) if isinstance(defense, str) else defense
    if defense.stage != "client":
        raise GradleakError(
            f"{defense.name} acts at the {defense.stage} stage, not on a finished update; a Mod can apply "
            "client-stage defenses only (prune, quantize, fp16, dp-fedavg's clipping, dp-distributed)"
        )
    generator = noise_generator(seed)

    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(message, context)
        if message.metadata.message_type != MessageType.TRAIN or not reply.has_content():
            return reply
        key, sent = _only_record(message.content, "received")
        reply_key, returned = _only_record(reply.content, "sent back")
        if list(sent) != list(returned):
            raise GradleakError(f"the reply's arrays {list(returned)} are not the received ones {list(sent)}")
        floats = [k for k in sent if np.issubdtype(sent[k].numpy().dtype, np.floating)]
        before = {k: torch.from_numpy(sent[k].numpy()) for k in floats}
        update = tuple(torch.from_numpy(returned[k].numpy()) - before[k] for k in floats)
        client = ClientContext(int(context.node_id), _num_examples(reply.content), generator)
        defended = defense.on_upload(update, client)
        arrays = dict(returned)
        for k, delta in zip(floats, defended):
            arrays[k] = Array((before[k] + delta).numpy())
        reply.content.array_records[reply_key] = ArrayRecord(arrays)
        return reply

    mod.__name__ = f"gradleak_{defense.name.replace('-', '_')}_mod"
    return mod


VET_REFUSED = 451  # the Error code of a reply refusing the received model


def vet_mod(declared: nn.Module, x: torch.Tensor, spec: str = "vet") -> Mod:
    """A Mod that vets the arrays a training message brings before the ClientApp trains on them.

    ``declared`` is the architecture the server announced; ``x`` the node's normalised inputs
    (its own batch or a public one) the checks run on. A refused model never reaches the app:
    the reply is an error (code ``VET_REFUSED``) naming the check that failed.
    """
    vet = build_defense(spec)
    if vet.stage != "receive":
        raise GradleakError(f"{vet.name} acts at the {vet.stage} stage; vet_mod takes a receive-stage check such as 'vet'")

    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if message.metadata.message_type != MessageType.TRAIN:
            return call_next(message, context)
        _, sent = _only_record(message.content, "received")
        reason = _received_shapes(sent, declared)
        if reason is None:
            received = copy.deepcopy(declared)
            received.load_state_dict({k: torch.from_numpy(sent[k].numpy().copy()) for k in sent})
            reason = vet.on_receive(received, declared, x)
        if reason is not None:
            return Message(Error(VET_REFUSED, f"{vet.name}: {reason}"), reply_to=message)
        return call_next(message, context)

    mod.__name__ = "gradleak_vet_mod"
    return mod


def _received_shapes(sent: ArrayRecord, declared: nn.Module) -> str | None:
    want = {k: tuple(v.shape) for k, v in declared.state_dict().items()}
    got = {k: tuple(sent[k].shape) for k in sent}
    if got == want:
        return None
    changed = sorted(set(got) ^ set(want)) or sorted(k for k in got if got[k] != want[k])
    return f"the received arrays differ from the declared architecture (first at {changed[0]})"


def _only_record(content: RecordDict, what: str) -> tuple[str, ArrayRecord]:
    records = list(content.array_records.items())
    if len(records) != 1:
        raise GradleakError(f"a defense Mod needs exactly one array record {what}, found {len(records)}")
    return records[0]


def _num_examples(content: RecordDict) -> int:
    for record in (*content.metric_records.values(), *content.config_records.values()):
        for key in NUM_EXAMPLES_KEYS:
            if key in record:
                return int(record[key])
    return 1


def dead_layers(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[str]:
    """The layers (``Linear``/``Conv2d``) whose weight gets an exactly zero gradient on batch ``(x, y)``.

    A trained or freshly initialised network moves every layer on real data; a layer silenced
    with zero weights and a large negative bias (dead ReLU or saturated sigmoid) stops the
    gradient of itself and of every layer before it.
    """
    model = model.train()
    weights = {name: m.weight for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(weights.values()), allow_unused=True)
    return [name for name, g in zip(weights, grads) if g is None or not bool(g.abs().max() > 0)]


def dead_layer_mod(model: Callable[[], nn.Module], batch: Callable[[Context], tuple[torch.Tensor, torch.Tensor]]) -> Mod:
    """A Mod that refuses to train a received model with a dead layer on this node's ``batch(context)``.

    ``model()`` builds the architecture the received arrays load into (in ``state_dict`` order);
    ``batch`` gives the node's normalised inputs and labels. The refusal is an ``Error`` reply
    (code :data:`REFUSED_CODE`), and every later message of the same round (group) is refused
    too, so a SecAgg+ server cannot collect this node's key shares to unmask the others alone.
    """

    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        group = message.metadata.group_id
        refused = context.state.config_records.get(REFUSED)
        if refused is not None and refused["group"] == group:
            return _refuse(message, f"node {context.node_id} refused round {group!r}: its model had dead layers")
        if message.metadata.message_type == MessageType.TRAIN and message.has_content() and message.content.array_records:
            _, received = _only_record(message.content, "received")
            net = model()
            net.load_state_dict({k: torch.from_numpy(np.asarray(a.numpy()).copy())
                                 for k, a in zip(net.state_dict(), received.values())})
            dead = dead_layers(net, *batch(context))
            if dead:
                context.state.config_records[REFUSED] = ConfigRecord({"group": group})
                reason = f"node {context.node_id} refuses to train: layers {', '.join(dead)} are dead on its data"
                log.warning(reason)
                return _refuse(message, reason)
        return call_next(message, context)

    return mod


def _refuse(message: Message, reason: str) -> Message:
    return Message(Error(REFUSED_CODE, reason), reply_to=message)
