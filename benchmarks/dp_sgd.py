"""DP-SGD step throughput and peak memory: gradleak against Opacus 1.6 and a non-private step, in one run.

One step = per-example clipping, noise and the SGD update. Modes: ``non-private`` (one batch
gradient and the update), gradleak's ``dp-sgd`` defense with ``clipping=fast`` (book-keeping
ghost clipping) and ``clipping=vmap`` (per-example gradients), Opacus's ``GradSampleModule`` +
``DPOptimizer`` (``opacus``, per-example gradients from hooks) and Opacus's ghost clipping
(``opacus-ghost``: ``GradSampleModuleFastGradientClipping`` + ``DPLossFastGradientClipping``,
two backward passes).

Each mode runs in processes of its own, as a user's training runs. In one shared process, one
mode's allocations move the C allocator's heap thresholds for the next (Opacus frees ~15 MB of
unfolded patches a step), so a mode's time would depend on its neighbour's page faults; and whether a
process page-faults every step depends on how its heap happened to be laid out, so each mode runs
in ``--processes`` of them (default 2) and the median is over all their steps. The processes are
timed in interleaved rounds (one step each in turn), so machine noise hits them alike; what
matters are the ratios. ``--same-process`` times all modes in one process instead. Peak memory
is measured once per mode in a subprocess of its own: the growth of the peak resident set over three
steps (CPU, Linux's VmHWM), or ``torch.cuda.max_memory_allocated`` (CUDA).

    python benchmarks/dp_sgd.py                # LeNet-Zhu (batch 64) and ResNet-18/GroupNorm (batch 32)
    python benchmarks/dp_sgd.py --device cuda --rounds 20 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
import warnings
from typing import Callable

import torch
from torchvision.models.resnet import BasicBlock

from gradleak.defenses import build_defense
from gradleak.device import resolve_device
from gradleak.federated import batch_gradient, loss_fn, noise_generator, trainable_names
from gradleak.models import build

CASES = {  # the two settings of the benchmark
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


def gradleak_step(model, x, y, clipping: str) -> Callable[[], None]:
    defense = build_defense(f"dp-sgd:noise_multiplier=1.0,clip=1.0,clipping={clipping}")
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


def _opacus_ready(model) -> None:
    # Opacus 1.6 wraps each layer's output for its full backward hooks, and autograd forbids
    # in-place changes to those: make ReLUs and torchvision's residual `out += identity` out of place.
    for layer in model.modules():
        if getattr(layer, "inplace", False):
            layer.inplace = False
        if isinstance(layer, BasicBlock):
            layer.forward = types.MethodType(_basic_block_out_of_place, layer)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")  # inputs need no grad here


def opacus_step(model, x, y) -> Callable[[], None]:
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    _opacus_ready(model)
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


def opacus_ghost_step(model, x, y) -> Callable[[], None]:
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.optimizers import DPOptimizerFastGradientClipping
    from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

    _opacus_ready(model)
    module = GradSampleModuleFastGradientClipping(model, max_grad_norm=1.0, use_ghost_clipping=True)
    optimizer = DPOptimizerFastGradientClipping(
        torch.optim.SGD(module.parameters(), lr=LR), noise_multiplier=1.0, max_grad_norm=1.0,
        expected_batch_size=len(x),
    )
    criterion = DPLossFastGradientClipping(module, optimizer, torch.nn.CrossEntropyLoss())

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        criterion(module(x), y).backward()
        optimizer.step()

    return step


MODES: dict[str, Callable[..., Callable[[], None]]] = {
    "non-private": plain_step,
    "gradleak-fast": lambda model, x, y: gradleak_step(model, x, y, "fast"),
    "gradleak-vmap": lambda model, x, y: gradleak_step(model, x, y, "vmap"),
    "opacus": opacus_step,
    "opacus-ghost": opacus_ghost_step,
}


def timed(step: Callable[[], None], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - start


def measure(steps: dict[str, Callable[[], None]], rounds: int, device: torch.device) -> dict[str, float]:
    """Median seconds per step of each, timed in interleaved rounds after one warm-up step each."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(timed(step, device))
    return {name: statistics.median(t) for name, t in times.items()}


class Worker:
    """One mode's step in a process of its own, timed one step per request (a line on its stdin)."""

    def __init__(self, case: str, mode: str, args: argparse.Namespace) -> None:
        self.mode = mode
        command = [sys.executable, __file__, "--worker-of", mode, "--case", case, "--device", args.device, "--threads", str(args.threads)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self) -> float:
        self.process.stdin.write("step\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker {self.mode} exited with {self.process.wait()}")
        return float(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def serve(case: str, mode: str, device: torch.device) -> None:
    """The worker's side: one timed step (seconds on stdout) per line on stdin, until stdin closes."""
    step = setup(case, mode, device)
    for _ in sys.stdin:
        print(timed(step, device), flush=True)


def measure_in_processes(case: str, args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per step of each mode over ``args.processes`` processes of its own, in interleaved rounds."""
    workers = {mode: [Worker(case, mode, args) for _ in range(args.processes)] for mode in MODES}
    try:
        for worker in (w for group in workers.values() for w in group):
            worker()  # warm-up
        times: dict[str, list[float]] = {mode: [] for mode in workers}
        for _ in range(args.rounds):
            for mode, group in workers.items():
                times[mode].extend(worker() for worker in group)
    finally:
        for worker in (w for group in workers.values() for w in group):
            worker.close()
    return {mode: statistics.median(t) for mode, t in times.items()}


def setup(case: str, mode: str, device: torch.device) -> Callable[[], None]:
    spec, batch = CASES[case]
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *SHAPE, generator=generator).to(device)
    y = torch.randint(CLASSES, (batch,), generator=generator).to(device)
    return MODES[mode](build(spec, SHAPE, CLASSES, seed=0).to(device), x, y)  # a fresh model each


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 2**10  # kB


def peak_memory(case: str, mode: str, device: torch.device, steps: int = 3) -> float:
    """MiB a mode's steps add to the peak: resident set high-water mark (CPU, Linux) or CUDA's peak allocation."""
    step = setup(case, mode, device)
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) / 2**20
    else:
        with open("/proc/self/clear_refs", "w") as clear:  # "5" resets VmHWM to the current resident set
            clear.write("5")
        base = _status_mib("VmRSS")
    for _ in range(steps):
        step()
    if device.type == "cuda":
        sync(device)
        return torch.cuda.max_memory_allocated(device) / 2**20 - base
    return _status_mib("VmHWM") - base


def peak_memory_in_subprocess(case: str, mode: str, args: argparse.Namespace) -> float:
    # One process per mode: a high-water mark only ever rises, so modes cannot share one.
    command = [sys.executable, __file__, "--memory-of", mode, "--case", case, "--device", args.device, "--threads", str(args.threads)]
    return float(subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()[-1])


def bench(case: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    batch = CASES[case][1]
    if args.same_process:
        seconds = measure({mode: setup(case, mode, device) for mode in MODES}, args.rounds, device)
    else:
        seconds = measure_in_processes(case, args)
    rate = {mode: batch / s for mode, s in seconds.items()}
    memory = {mode: peak_memory_in_subprocess(case, mode, args) for mode in MODES} if args.memory else {}
    best_opacus = max(("opacus", "opacus-ghost"), key=rate.get)
    return {
        "case": case,
        "batch": batch,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "processes_per_mode": 0 if args.same_process else args.processes,  # 0: all modes in one process
        **{f"{mode}_samples_per_s": r for mode, r in rate.items()},
        **{f"{mode}_peak_mib": m for mode, m in memory.items()},
        "best_opacus": best_opacus,
        "fast_vs_best_opacus": rate["gradleak-fast"] / rate[best_opacus],
        "fast_vs_vmap": rate["gradleak-fast"] / rate["gradleak-vmap"],
        "fast_overhead_vs_non_private": seconds["gradleak-fast"] / seconds["non-private"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES, action="append", help="default: all")
    parser.add_argument("--rounds", type=int, default=10, help="timed steps of each (default 10)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU (default 1)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory subprocesses")
    parser.add_argument("--processes", type=int, default=2, help="processes per mode (default 2)")
    parser.add_argument("--same-process", action="store_true", help="time all modes in this one process")
    parser.add_argument("--memory-of", choices=MODES, help=argparse.SUPPRESS)  # the per-mode subprocess
    parser.add_argument("--worker-of", choices=MODES, help=argparse.SUPPRESS)  # the per-mode timing process
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.processes < 1:
        parser.error(f"--processes must be at least 1, not {args.processes}")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.memory_of:
        print(peak_memory(args.case[0], args.memory_of, device))
        return
    if args.worker_of:
        serve(args.case[0], args.worker_of, device)
        return
    results = [bench(case, args, device) for case in args.case or CASES]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"{r['case']} batch {r['batch']} on {r['device']}, {r['threads']} thread(s), "
              + (f"{r['processes_per_mode']} processes per mode" if r["processes_per_mode"] else "one process"))
        for mode in MODES:
            memory = f"{r[f'{mode}_peak_mib']:>9.0f} MiB peak" if args.memory else ""
            print(f"  {mode:<14} {r[f'{mode}_samples_per_s']:>10.1f} samples/s {memory}")
        print(
            f"  fast / best Opacus ({r['best_opacus']}): {r['fast_vs_best_opacus']:.2f}x   fast / vmap: "
            f"{r['fast_vs_vmap']:.2f}x   DP step / plain step: {r['fast_overhead_vs_non_private']:.2f}x"
        )


if __name__ == "__main__":
    main()
