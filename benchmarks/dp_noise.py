"""What private noise costs: a DP-SGD step with CSPRNG noise against one with torch's generator.

Both are the ``dp-sgd`` defense's ``step_gradient`` plus the SGD update on LeNet-Zhu (batch 64,
32x32x3). The reference draws its noise as gradleak did before the CSPRNG: ``torch.randn`` from a
``torch.Generator`` in the tensors' dtype, added without snapping. The private step uses
:func:`gradleak.federated.noise_generator` without a seed (AES-256-CTR keystream, Box-Muller in
float64, snapped to the power-of-two grid). They are timed in interleaved rounds and the median
is kept, so machine noise hits both alike. The bar: the private step keeps >= 90% of the throughput.

    python benchmarks/dp_noise.py
    python benchmarks/dp_noise.py --device cuda --rounds 30
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable
from unittest import mock

import torch

from gradleak.defenses import build_defense, dp_sgd
from gradleak.device import resolve_device
from gradleak.federated import noise_generator, trainable_names
from gradleak.models import build

SHAPE, CLASSES, LR, BATCH = (3, 32, 32), 10, 0.1, 64


def torch_noise(update, std, generator):
    """The reference: N(0, std^2) from torch's generator, as gradleak drew it before the CSPRNG."""
    tensors = list(update)
    sizes = [t.numel() for t in tensors]
    z = std * torch.randn(sum(sizes), generator=generator, dtype=tensors[0].dtype, device=tensors[0].device)
    return tuple(torch._foreach_add(tensors, [p.view_as(t) for p, t in zip(z.split(sizes), tensors)]))


def dp_step(model, x, y, generator: torch.Generator) -> Callable[[], None]:
    defense = build_defense("dp-sgd:noise_multiplier=1.0,clip=1.0")
    names = trainable_names(model)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}

    def step() -> None:
        grads = defense.step_gradient(model, params, x, y, generator)
        for n, g in zip(names, grads):
            params[n] = params[n] - LR * g

    return step


def timed(step: Callable[[], None], device: torch.device, reps: int) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(reps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (median kept)")
    parser.add_argument("--reps", type=int, default=5, help="steps per round")
    args = parser.parse_args()
    device = resolve_device(args.device)
    model = build("lenet-zhu", SHAPE, CLASSES, seed=0).to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(BATCH, *SHAPE, generator=generator).to(device)
    y = torch.arange(BATCH, device=device) % CLASSES
    reference = dp_step(model, x, y, torch.Generator(device=device).manual_seed(1))
    private = dp_step(model, x, y, noise_generator(None, device))
    times: dict[str, list[float]] = {"torch generator": [], "CSPRNG": []}
    with mock.patch.object(dp_sgd, "add_noise", torch_noise):
        reference()  # warm-up
    private()
    for _ in range(args.rounds):
        with mock.patch.object(dp_sgd, "add_noise", torch_noise):
            times["torch generator"].append(timed(reference, device, args.reps))
        times["CSPRNG"].append(timed(private, device, args.reps))
    median = {k: statistics.median(v) for k, v in times.items()}
    for name, seconds in median.items():
        print(f"{name:16s} {1 / seconds:8.1f} steps/s")
    ratio = median["torch generator"] / median["CSPRNG"]
    print(f"CSPRNG / torch-generator throughput: {ratio:.3f} (bar: >= 0.90)")


if __name__ == "__main__":
    main()
