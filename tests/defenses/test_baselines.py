"""Pruning, k-bit quantisation and half precision act on each tensor as stated; specs are checked."""

import pytest
import torch

from gradleak.defenses import ClientContext, build_defense, build_stack
from gradleak.errors import GradleakError
from gradleak.federated import noise_generator


def upload(seed=0, device="cpu"):
    generator = torch.Generator().manual_seed(seed)
    tensors = (torch.randn(20, 50, generator=generator), torch.randn(7, generator=generator), torch.zeros(5))
    return tuple(t.to(device) for t in tensors)


def apply(spec, update, seed=0):
    return build_defense(spec).on_upload(update, ClientContext(0, 1, noise_generator(seed, update[0].device)))


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.9, 0.99])
def test_pruning_zeroes_the_smallest_fraction_of_each_tensor(ratio, device):
    raw = upload(device=device)
    pruned = apply(f"prune:ratio={ratio}", raw)
    for before, after in zip(raw[:2], pruned[:2]):
        dropped = int(ratio * before.numel())
        assert int((after == 0).sum()) == dropped
        kept = after != 0
        torch.testing.assert_close(after[kept], before[kept])  # survivors are unchanged
        if dropped:
            assert before[~kept].abs().max() <= before[kept].abs().min()  # the smallest went


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantisation_uses_at_most_2_to_the_k_levels_and_bounded_error(bits, device):
    raw = upload(device=device)
    quantised = apply(f"quantize:bits={bits}", raw)
    levels = 2 ** (bits - 1) - 1
    for before, after in zip(raw[:2], quantised[:2]):
        scale = before.abs().max()
        assert len(torch.unique(after)) <= 2 * levels + 1
        assert (after - before).abs().max() <= scale / levels / 2 + 1e-6
    assert torch.equal(quantised[2], raw[2])  # an all-zero tensor stays zero


def test_stochastic_quantisation_is_unbiased(device):
    raw = (torch.cat([torch.full((20000,), 0.3), torch.tensor([1.0])]).to(device),)  # scale 1: levels -1, 0, 1
    quantised = apply("quantize:bits=2,stochastic=true", raw)[0][:-1]
    assert set(torch.unique(quantised).tolist()) == {0.0, 1.0}
    assert quantised.mean().item() == pytest.approx(0.3, abs=0.01)


def test_fp16_is_a_round_trip_through_half_precision(device):
    raw = upload(device=device)
    halved = apply("fp16", raw)
    for before, after in zip(raw, halved):
        assert after.dtype == before.dtype
        torch.testing.assert_close(after, before.half().float(), rtol=0, atol=0)
    with pytest.raises(GradleakError, match="float16 range"):
        apply("fp16", (torch.tensor([1e6]),))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("prune:ratio=1", "ratio='1' for defense 'prune' is out of range"),
        ("prune:sparsity=0.5", "valid keys: ratio"),
        ("quantize:bits=1", "between 2 and 24"),
        ("quantise", "choose one of: .*quantize"),
        ("dp-sgd:epsilon=3,noise_multiplier=1", "both given"),
        ("dp-sgd:clip=0,epsilon=1", "clip"),
        ("dp-fedavg:noise_multiplier=1,accountant=gdp", "choose one of: pld, rdp"),
        ("dp-sgd:noise_multiplier=1,sample_rate=2", "sample_rate='2'"),
    ],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(GradleakError, match=message):
        build_stack([spec])


def test_a_stack_orders_defenses_by_stage_and_keeps_one_step_defense():
    stack = build_stack(["fp16", "dp-fedavg:noise_multiplier=1", "none", "dp-sgd:noise_multiplier=1", "prune:ratio=0.5"])
    assert [d.name for d in stack] == ["dp-sgd", "fp16", "dp-fedavg", "prune"]
    assert [d.name for d in stack.at("client")] == ["fp16", "dp-fedavg", "prune"]
    assert [d.name for d in stack.at("server")] == ["dp-fedavg"]
    with pytest.raises(GradleakError, match="step stage"):
        build_stack(["dp-sgd:noise_multiplier=1", "dp-sgd:noise_multiplier=2"])
