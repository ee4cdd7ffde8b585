"""How much faster gradleak's DLG (or, with ``--attack rgap``, its R-GAP) is than the original recipe, side by side.

The reference is the DLG loop as Zhu et al. published it, written plainly below:
``torch.optim.LBFGS(lr=1)`` with its defaults (20 inner iterations, history 100), 300 steps,
squared L2 over all parameters, image and soft label optimised jointly. Both start from the
same seeded draws, scaled as each draws its start (the reference: N(0, 1) as published,
gradleak: its ``init_scale``), with the same intra-op thread count.

1. Time to 40 dB, one image at a time (LeNet-Zhu, U(-0.5, 0.5) init): the reference is timed
   until its image first reaches PSNR >= 40 dB (checked after every step, the check itself
   not timed), or over its whole run if it never does. gradleak twice in the same run: to its
   own stop (``reconstruct`` returns without the truth, usually at 45-52 dB), and watched like
   the reference (the first check, every 10 evaluations, at which its current image reaches
   40 dB; the watching not timed). Ratios: total reference time / total gradleak time, the
   same per image brought to 40 dB (each side's total time over its successes), and on the
   cases both bring to 40 dB.
2. Many images: gradleak's vectorised many-problem mode (``--workers`` processes, ``--slots``
   problems in flight in each) against the reference run one image after another, in images
   reconstructed to 40 dB per minute.

    python benchmarks/attack_speed.py                  # photos 0-5, seeds 0-4, 16 images for part 2
    python benchmarks/attack_speed.py --skip-single --many 48 --reference-images 16 --compile  # part 2 as recorded
    python benchmarks/attack_speed.py --quick          # photos 0-1, seed 0, 4 images
    python benchmarks/attack_speed.py --compile        # gradleak with compile=true (both parts)
    python benchmarks/attack_speed.py --attack rgap --many 0   # part 1 with R-GAP's analytic start

With ``--compile`` the compilation is timed too: torch's on-disk cache is pointed at a fresh
temporary folder, so the first problem (and each worker of part 2) compiles from scratch.
``--warm-cache`` fills that folder first, in a separate untimed process, so that the timed
runs load the compiled code from disk as every run after the first on a machine does. It
warms part 1's single-problem shapes; part 2's vmapped batches still compile their own.

Prints one JSON object at the end (``--json FILE`` writes it too).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F

from gradleak.attacks import build_attack
from gradleak.attacks.dlg import DLG
from gradleak.attacks.many import ManySettings, reconstruct_many
from gradleak.data import load_dataset
from gradleak.eval.metrics import jsonable, psnr
from gradleak.federated import Client, run_round
from gradleak.models import build
from gradleak.threat import ServerView

TARGET_DB = 40.0


def make_round(dataset, index: int, seed: int):
    """One client holding one image; the server sees its FedSGD gradient on LeNet-Zhu."""
    images, labels = dataset.get([index])
    model = build("lenet-zhu", dataset.shape, dataset.num_classes, seed=seed)
    return run_round(model, dataset.normalization, [Client(0, images, labels)], dataset.num_classes)


def reference_dlg(view: ServerView, truth_image: torch.Tensor, seed: int, steps: int = 300) -> dict:
    """The original recipe; returns seconds to 40 dB (or to the end), evaluations and PSNR."""
    model, target = view.model, [u.detach() for u in view.update]
    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(seed)  # the same draws as gradleak's first start
    dummy_x = torch.randn((1, *view.input_shape), generator=generator).requires_grad_(True)  # N(0, 1), as published
    dummy_y = torch.randn((1, view.num_classes), generator=generator).requires_grad_(True)
    optimizer = torch.optim.LBFGS([dummy_x, dummy_y], lr=1)
    evaluations = 0

    def closure():
        nonlocal evaluations
        evaluations += 1
        optimizer.zero_grad()
        loss = F.cross_entropy(model(dummy_x), F.softmax(dummy_y, dim=-1))
        dummy_grad = torch.autograd.grad(loss, params, create_graph=True)
        distance = sum(((a - b) ** 2).sum() for a, b in zip(dummy_grad, target))
        distance.backward()
        return distance

    seconds, quality = 0.0, -math.inf
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.step(closure)
        seconds += time.perf_counter() - start
        quality = psnr(view.normalization.denormalize(dummy_x.detach())[0], truth_image)
        if quality >= TARGET_DB:
            break
    return {"seconds": seconds, "evaluations": evaluations, "psnr": quality, "reached": quality >= TARGET_DB}


def gradleak_attack(view: ServerView, truth_image: torch.Tensor, seed: int, attack: str, compile: bool) -> dict:
    """gradleak's ``attack`` (dlg or rgap), timed to its own stop, and also (watched like the reference) to 40 dB."""
    watching = {"seconds": 0.0, "reached_at": None}

    def watch(evaluations: int, images: torch.Tensor) -> None:
        start = time.perf_counter()
        if watching["reached_at"] is None and psnr(view.normalization.denormalize(images)[0], truth_image) >= TARGET_DB:
            watching["reached_at"] = start - began - watching["seconds"]
        watching["seconds"] += time.perf_counter() - start

    began = time.perf_counter()
    reconstruction = build_attack(attack, seed=seed, compile=compile).reconstruct(view, on_check=watch)
    seconds = time.perf_counter() - began - watching["seconds"]
    quality = psnr(reconstruction.images[0], truth_image)
    return {
        "seconds": seconds,
        "seconds_to_40_db": watching["reached_at"] if watching["reached_at"] is not None else seconds,
        "reached_watched": watching["reached_at"] is not None,
        "evaluations": reconstruction.info["evaluations"],
        "starts": reconstruction.info["starts"],
        "psnr": quality,
        "reached": quality >= TARGET_DB,
    }


def single(dataset, indices, seeds, attack: str, compile: bool) -> dict:
    cases = []
    for seed in seeds:
        for index in indices:
            round_ = make_round(dataset, index, seed)
            truth = round_.truth.images[0]
            reference = reference_dlg(round_.view, truth, seed)
            ours = gradleak_attack(round_.view, truth, seed, attack, compile)
            cases.append({"index": index, "seed": seed, "reference": reference, "gradleak": ours})
            print(
                f"{dataset.name}[{index}] seed {seed}: reference {reference['seconds']:.1f} s "
                f"({reference['psnr']:.1f} dB, {reference['evaluations']} evals), gradleak {ours['seconds']:.1f} s "
                f"({ours['psnr']:.1f} dB, {ours['evaluations']} evals, {ours['starts']} start(s))",
                flush=True,
            )
    return {"cases": cases, "own_stop": _ratios(cases, "seconds", "reached"),
            "watched": _ratios(cases, "seconds_to_40_db", "reached_watched")}


def _ratios(cases: list[dict], seconds: str, reached: str) -> dict:
    """Ratios with gradleak timed by ``seconds`` and counted by ``reached`` (the reference: to 40 dB)."""
    ours = [(c["gradleak"][seconds], c["gradleak"][reached]) for c in cases]
    theirs = [(c["reference"]["seconds"], c["reference"]["reached"]) for c in cases]
    # the whole run's time over the images it brought to 40 dB: what a reconstruction costs
    per_success = {who: sum(t for t, _ in runs) / max(1, sum(r for _, r in runs))
                   for who, runs in (("reference", theirs), ("gradleak", ours))}
    both = [k for k, c in enumerate(cases) if c["reference"]["reached"] and ours[k][1]]
    return {
        "reference_reached": sum(r for _, r in theirs),
        "gradleak_reached": sum(r for _, r in ours),
        "ratio_all": sum(t for t, _ in theirs) / sum(t for t, _ in ours),
        "seconds_per_success": per_success,
        "ratio_per_success": per_success["reference"] / per_success["gradleak"],
        "ratio_where_both_reached": (
            sum(theirs[k][0] for k in both) / sum(ours[k][0] for k in both) if both else None
        ),
    }


def many(dataset, indices, seed: int, workers: int, slots: int, reference_images: int, compile: bool) -> dict:
    rounds = [make_round(dataset, index, seed) for index in indices]
    start = time.perf_counter()
    reconstructions = reconstruct_many(
        [r.view for r in rounds], DLG.Config(seed=seed, compile=compile), ManySettings(slots=slots, workers=workers)
    )
    ours_seconds = time.perf_counter() - start
    ours_psnr = [psnr(rec.images[0], r.truth.images[0]) for rec, r in zip(reconstructions, rounds)]
    ours_reached = sum(value >= TARGET_DB for value in ours_psnr)
    reference = [reference_dlg(r.view, r.truth.images[0], seed) for r in rounds[:reference_images]]
    reference_seconds = sum(r["seconds"] for r in reference)
    ours_rate = 60 * ours_reached / ours_seconds
    reference_rate = 60 * sum(r["reached"] for r in reference) / reference_seconds
    print(
        f"many: gradleak {ours_reached}/{len(rounds)} images at >= 40 dB in {ours_seconds:.1f} s "
        f"({ours_rate:.2f}/min); reference one by one {sum(r['reached'] for r in reference)}/{len(reference)} "
        f"in {reference_seconds:.1f} s ({reference_rate:.2f}/min)",
        flush=True,
    )
    return {
        "images": len(rounds),
        "workers": workers,
        "slots": slots,
        "gradleak_seconds": ours_seconds,
        "gradleak_reached": ours_reached,
        "reference_images": len(reference),
        "reference_seconds": reference_seconds,
        "reference_reached": sum(r["reached"] for r in reference),
        "images_per_minute": {"gradleak": ours_rate, "reference": reference_rate},
        "ratio": ours_rate / reference_rate if reference_rate else math.inf,
        "gradleak_per_image": [
            {"index": index, "psnr": value, "evaluations": rec.info["evaluations"]}
            for index, value, rec in zip(indices, ours_psnr, reconstructions)
        ],
    }


def _fill_cache(dataset_name: str) -> None:
    """Compile gradleak's DLG once, so that torch's on-disk cache holds it (run in its own process)."""
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    round_ = make_round(load_dataset(dataset_name), 0, 0)
    build_attack("dlg", compile=True, iterations=20, restarts=1).reconstruct(round_.view)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="photos")
    parser.add_argument("--indices", type=int, nargs="+", default=list(range(6)))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(5)))
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for both (default 1)")
    parser.add_argument("--many", type=int, default=16, help="images for part 2 (0: skip)")
    parser.add_argument("--reference-images", type=int, default=4, help="of those, how many the reference runs")
    parser.add_argument("--workers", type=int, default=2, help="processes for the many-problem mode")
    parser.add_argument("--slots", type=int, default=8, help="problems in flight per worker (default 8)")
    parser.add_argument("--attack", default="dlg", choices=["dlg", "rgap"], help="gradleak's attack in part 1 (default dlg)")
    parser.add_argument("--quick", action="store_true", help="photos 0-1, seed 0, 4 images")
    parser.add_argument("--skip-single", action="store_true")
    parser.add_argument("--compile", action="store_true", help="gradleak with compile=true, compilation timed")
    parser.add_argument("--warm-cache", action="store_true",
                        help="with --compile: fill torch's on-disk cache first, untimed (a later run on the same machine)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    if args.quick:
        args.indices, args.seeds, args.many, args.reference_images = [0, 1], [0], 4, 2
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
    if args.warm_cache and not args.compile:
        parser.error("--warm-cache needs --compile")
    if args.compile:  # read when the first compile starts; spawned workers inherit it
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="gradleak-inductor-")
    if args.warm_cache:
        filler = multiprocessing.get_context("spawn").Process(target=_fill_cache, args=(args.dataset,))
        filler.start()
        filler.join()
        if filler.exitcode != 0:
            raise SystemExit(f"filling the compile cache failed (exit code {filler.exitcode}); run without --warm-cache")
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset)
    result = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)",
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "dataset": args.dataset,
        "gradleak": f"{args.attack}:compile=true" if args.compile else args.attack,
        "compile_cache": "warm" if args.warm_cache else "cold" if args.compile else None,
    }
    if not args.skip_single:
        result["single"] = single(dataset, args.indices, args.seeds, args.attack, args.compile)
        for name, label in (("own_stop", "gradleak to its own stop"), ("watched", "both watched to 40 dB")):
            r = result["single"][name]
            print(
                f"{label}: {r['ratio_all']:.2f}x over all cases, {r['ratio_per_success']:.2f}x per image reconstructed "
                f"(reference {r['reference_reached']}, gradleak {r['gradleak_reached']} of {len(result['single']['cases'])})",
                flush=True,
            )
    if args.many:
        indices = [i % len(dataset) for i in range(args.many)]
        result["many"] = many(dataset, indices, args.seeds[0], args.workers, args.slots, args.reference_images, args.compile)
        print(f"images per minute: {result['many']['ratio']:.2f}x", flush=True)
    text = json.dumps(jsonable(result))
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
