"""gradleak defenses as Flower Mods: the update leaving the Mod is the defense applied to the raw update."""

from __future__ import annotations

import pytest

flwr = pytest.importorskip("flwr", reason="Flower is not installed (pip install 'gradleak[flower]')")

import torch  # noqa: E402
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict  # noqa: E402

from gradleak.defenses import ClientContext, build_defense  # noqa: E402
from gradleak.errors import GradleakError  # noqa: E402
from gradleak.flower import InProcessGrid, defense_mod, vet_mod  # noqa: E402

from flower_app import global_model, make_app  # noqa: E402

NODES = 2
SEED = 7


def _updates(mods) -> tuple[dict, list[tuple[torch.Tensor, ...]]]:
    """Each node's update (reply minus sent), driven through Flower's message API in this process."""
    sent = global_model().state_dict()
    grid = InProcessGrid(make_app(mods), NODES)
    messages = [Message(RecordDict({"arrays": ArrayRecord(sent), "config": ConfigRecord({"server-round": 1})}),
                        nid, MessageType.TRAIN) for nid in grid.get_node_ids()]
    replies = grid.send_and_receive(messages)
    updates = []
    for reply in replies:
        back = reply.content["arrays"].to_torch_state_dict()
        updates.append(tuple(back[k] - sent[k] for k in sent))
    return sent, updates


@pytest.mark.parametrize("spec", ["prune:ratio=0.5", "quantize:bits=3", "dp-distributed:epsilon=4,clients=4"])
def test_mod_applies_the_defense_to_the_raw_update(spec):
    _, raw = _updates([])
    _, defended = _updates([defense_mod(spec, seed=SEED)])
    defense = build_defense(spec)
    generator = torch.Generator().manual_seed(SEED)  # one seeded stream, drawn node after node
    for k, (update, out) in enumerate(zip(raw, defended)):
        expected = defense.on_upload(update, ClientContext(InProcessGrid.node_id(k), 1, generator))
        scale = max(float(e.abs().max()) for e in expected)
        for e, o, u in zip(expected, out, update):
            # w_before + delta - w_before is exact up to float32 rounding of the weights (|w| < 1)
            assert torch.allclose(o, e, rtol=0, atol=1e-6), spec
        # and the defense did change the update, well beyond that tolerance
        assert max(float((e - u).abs().max()) for e, u in zip(expected, update)) > 1e-3 * scale


def test_step_stage_defenses_are_refused():
    with pytest.raises(GradleakError, match="client-stage"):
        defense_mod("dp-sgd:epsilon=3")


def test_vet_mod_replies_with_an_error_to_a_silenced_model_and_trains_an_honest_one():
    from gradleak.flower.mods import VET_REFUSED
    from gradleak.servers.inconsistent import silence

    from flower_app import dataset, partition

    honest = global_model()
    x = dataset().normalization.normalize(partition(0)[0])
    grid = InProcessGrid(make_app([vet_mod(global_model(), x)]), NODES)
    for model, refused in ((honest, False), (silence(honest, 1e4), True)):
        sent = ArrayRecord(model.state_dict())
        messages = [Message(RecordDict({"arrays": sent, "config": ConfigRecord({"server-round": 1})}), nid, MessageType.TRAIN)
                    for nid in grid.get_node_ids()]
        for reply in grid.send_and_receive(messages):
            assert reply.has_error() == refused
            if refused:
                assert reply.error.code == VET_REFUSED and "no gradient" in reply.error.reason
