"""DP-SGD step throughput: gradleak against Opacus 1.6 and against a non-private step, in one run.

One step = per-example gradients, clipping, noise and the SGD update (Opacus: GradSampleModule
+ DPOptimizer; gradleak: the ``dp-sgd`` defense's ``step_gradient`` and the same update; the
reference: one batch gradient and the update). The three are timed in interleaved rounds and
the median is kept, so machine noise hits all of them alike; what matters are the ratios.

    python benchmarks/dp_sgd.py                # LeNet-Zhu (batch 64) and ResNet-18/GroupNorm (batch 32)
    python benchmarks/dp_sgd.py --device cuda --rounds 20 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from typing import Callable

import types

import torch
from torchvision.models.resnet import BasicBlock

from gradleak.defenses import build_defense
from gradleak.device import resolve_device
from gradleak.federated import batch_gradient, loss_fn, noise_generator, trainable_names
from gradleak.models import build

CASES = {  # issue 5: the two settings of the benchmark
    "lenet-zhu": ("lenet-zhu", 64),
    "resnet18-gn": ("resnet18:norm=group", 32),
}
SHAPE, CLASSES, LR = (3, 32, 32), 10, 0.1


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_step(model, x, y) -> Callable[[], None]:
    names = trainable_names(model)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}

    def step() -> None:
        grads = batch_gradient(model, params, x, y)
        for n, g in zip(names, grads):
            params[n] = params[n] - LR * g

    return step


def gradleak_step(model, x, y) -> Callable[[], None]:
    defense = build_defense("dp-sgd:noise_multiplier=1.0,clip=1.0")
    names = trainable_names(model)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    generator = noise_generator(0, x.device)

    def step() -> None:
        grads = defense.step_gradient(model, params, x, y, generator)
        for n, g in zip(names, grads):
            params[n] = params[n] - LR * g

    return step


def _basic_block_out_of_place(block: BasicBlock, x: torch.Tensor) -> torch.Tensor:
    identity = x if block.downsample is None else block.downsample(x)
    out = block.relu(block.bn1(block.conv1(x)))
    return block.relu(block.bn2(block.conv2(out)) + identity)


def opacus_step(model, x, y) -> Callable[[], None]:
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    # Opacus 1.6 wraps each layer's output for its full backward hooks, and autograd forbids
    # in-place changes to those: make ReLUs and torchvision's residual `out += identity` out of place.
    for layer in model.modules():
        if getattr(layer, "inplace", False):
            layer.inplace = False
        if isinstance(layer, BasicBlock):
            layer.forward = types.MethodType(_basic_block_out_of_place, layer)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")  # inputs need no grad here
    module = GradSampleModule(model)
    optimizer = DPOptimizer(
        torch.optim.SGD(module.parameters(), lr=LR), noise_multiplier=1.0, max_grad_norm=1.0,
        expected_batch_size=len(x),
    )

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(module(x), y).backward()
        optimizer.step()

    return step


def measure(steps: dict[str, Callable[[], None]], rounds: int, device: torch.device) -> dict[str, float]:
    """Median seconds per step of each, timed in interleaved rounds after one warm-up step each."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench(case: str, rounds: int, device: torch.device) -> dict[str, float]:
    spec, batch = CASES[case]
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *SHAPE, generator=generator).to(device)
    y = torch.randint(CLASSES, (batch,), generator=generator).to(device)
    make = lambda: build(spec, SHAPE, CLASSES, seed=0).to(device)  # noqa: E731  (one fresh model each)
    seconds = measure(
        {"non-private": plain_step(make(), x, y), "gradleak": gradleak_step(make(), x, y), "opacus": opacus_step(make(), x, y)},
        rounds,
        device,
    )
    rate = {name: batch / s for name, s in seconds.items()}
    return {
        "case": case,
        "batch": batch,
        "device": str(device),
        "threads": torch.get_num_threads(),
        **{f"{name}_samples_per_s": r for name, r in rate.items()},
        "gradleak_vs_opacus": rate["gradleak"] / rate["opacus"],
        "gradleak_overhead_vs_non_private": seconds["gradleak"] / seconds["non-private"],
        "opacus_overhead_vs_non_private": seconds["opacus"] / seconds["non-private"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES, action="append", help="default: all")
    parser.add_argument("--rounds", type=int, default=10, help="timed steps of each (default 10)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU (default 1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    results = [bench(case, args.rounds, device) for case in args.case or CASES]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'case':<12} {'batch':>5} {'non-private':>12} {'gradleak':>9} {'opacus':>9}  (samples/s)  gradleak/opacus  DP overhead")
    for r in results:
        print(
            f"{r['case']:<12} {r['batch']:>5} {r['non-private_samples_per_s']:>12.1f} {r['gradleak_samples_per_s']:>9.1f} "
            f"{r['opacus_samples_per_s']:>9.1f}  {r['gradleak_vs_opacus']:>26.2f}x  {r['gradleak_overhead_vs_non_private']:>10.2f}x"
        )


if __name__ == "__main__":
    main()
