"""Inverting Gradients against DLG per iteration budget, on untrained and trained networks.

For each model (LeNet-Zhu; the IG ConvNet untrained and after training on the embedded data;
ResNet-18), image and budget (500 / 2,000 / 10,000 iterations), runs IG (cosine + TV, signed
Adam, boxed) and DLG (L2, L-BFGS, one start that spends its whole budget of evaluations) and
records PSNR and SSIM. A DLG run also reports the smaller budgets, read off its checks. Runs go
to ``--workers`` processes (on one GPU they share it), the 2,000-iteration budget first; past
``--deadline`` seconds no new run starts.

    python benchmarks/attack_table.py --device cuda --workers 8 --out table.json
    python benchmarks/attack_table.py --markdown table.json      # the docs table from a result file
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import warnings
from collections import defaultdict

MODELS = [  # (label, model spec, trained epochs)
    ("LeNet-Zhu", "lenet-zhu", 0.0),
    ("ConvNet-16", "convnet:width=16", 0.0),
    ("ConvNet-16, trained 2 epochs", "convnet:width=16", 2.0),
    ("ResNet-18", "resnet18", 0.0),
]
IMAGES = [("photos", 0), ("faces", 0)]
BUDGETS = [2000, 500, 10000]
ATTACKS = {  # IG with the paper's CIFAR-10 settings, and with a TV weight and step tuned on LeNet-Zhu photos
    "IG": "ig:iterations={n}",
    "IG tv=1e-2 lr=0.3": "ig:iterations={n},tv=1e-2,lr=0.3",
    "IG L2": "ig:iterations={n},objective=l2",  # the paper's comparison: same optimiser and prior, L2 objective
    "DLG": "dlg:iterations={n},restarts=1,abandon_stalled=false",  # one start, spending the whole budget
}


def jobs(budgets: list[int], models: list[str], datasets: list[str], attacks: list[str], mode: str) -> list[dict]:
    return [
        {"model": label, "spec": spec, "epochs": epochs, "dataset": dataset, "index": index, "budget": budget,
         "attack": attack, "mode": mode}
        for budget in budgets
        for label, spec, epochs in MODELS
        for dataset, index in IMAGES
        for attack in attacks
        if label in models and dataset in datasets
    ]


def run(job: dict, device: str) -> dict:
    import torch

    from gradleak.attacks import build_attack
    from gradleak.eval.metrics import score
    from gradleak.scenario import Scenario, build_round

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    scenario = Scenario(dataset=job["dataset"], index=job["index"], model=job["spec"], trained_epochs=job["epochs"],
                        model_mode=job["mode"])
    round_ = build_round(scenario, device=device)
    attack = build_attack(ATTACKS[job["attack"]].format(n=job["budget"]))
    seen: list[torch.Tensor] = []
    watch = {"on_check": lambda evaluations, images: seen.append(images.detach().cpu())} if job["attack"] == "DLG" else {}
    start = time.perf_counter()
    reconstruction = attack.reconstruct(round_.view, **watch)
    scores = score(reconstruction, round_.truth)
    return {**job, "psnr": scores.mean_psnr, "ssim": scores.mean_ssim, "seconds": time.perf_counter() - start,
            "evaluations": reconstruction.info.get("evaluations"), "outcome": reconstruction.info.get("outcome"),
            "device": device, "smaller_budgets": _smaller_budgets(reconstruction, seen, round_, job["budget"])}


def _smaller_budgets(reconstruction, seen: list, round_, budget: int) -> dict[str, dict]:
    """DLG at each smaller budget, read off the one run's checks.

    One start that spends its whole budget (``abandon_stalled=false``) is deterministic, so its
    first n evaluations are the run with ``iterations=n``, and the engine's answer after them is
    the check with the lowest worst-layer error so far (the first, on ties).
    """
    from gradleak.eval.metrics import score
    from gradleak.threat import Reconstruction

    found = {}
    for smaller in BUDGETS:
        checks = [(h["score"], k) for k, h in enumerate(reconstruction.history) if h["iteration"] <= smaller]
        if smaller >= budget or not checks or len(seen) != len(reconstruction.history):
            continue
        best = min(checks)[1]
        images = round_.view.normalization.denormalize(seen[best]).float()
        scores = score(Reconstruction(images=images, labels=None), round_.truth)
        found[str(smaller)] = {"psnr": scores.mean_psnr, "ssim": scores.mean_ssim}  # str: as JSON stores it
    return found


def _run(args: tuple[dict, str, float]) -> dict | None:
    job, device, deadline = args
    if time.time() > deadline:
        return None
    try:
        return run(job, device)
    except Exception as exc:  # one failing cell must not lose the others
        return {**job, "error": repr(exc)}


def markdown(results: list[dict]) -> str:
    budgets = sorted({r["budget"] for r in results if r} | {int(b) for r in results if r for b in r.get("smaller_budgets", {})})
    attacks = [a for a in ATTACKS if any(r and r["attack"] == a for r in results)]
    cells: dict[tuple, dict] = defaultdict(dict)
    for r in results:
        if r and "error" not in r:
            cells[(r["model"], r["dataset"])][(r["attack"], r["budget"])] = r
    header = "| model | image | " + " | ".join(f"{a} {b:,}" for b in budgets for a in attacks) + " |"
    lines = [header, "|" + " --- |" * (2 + len(budgets) * len(attacks))]
    for label, _, _ in MODELS:
        for dataset, index in IMAGES:
            row = cells.get((label, dataset), {})
            if not row:
                continue
            values = []
            for budget in budgets:
                for attack in attacks:
                    r = row.get((attack, budget)) or _read_off(row, attack, budget)
                    values.append(f"{r['psnr']:.1f} / {r['ssim']:.2f}" if r else "—")
            lines.append(f"| {label} | {dataset}[{index}] | " + " | ".join(values) + " |")
    return "\n".join(lines)


def _read_off(row: dict, attack: str, budget: int) -> dict | None:
    """A cell not run on its own, read off a longer run of the same attack."""
    for (other, _), r in sorted(row.items(), key=lambda item: item[0][1]):
        if other == attack and str(budget) in r.get("smaller_budgets", {}):
            return r["smaller_budgets"][str(budget)]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=1e9, help="seconds after which no run starts")
    parser.add_argument("--out", default="attack_table.json", help="results, rewritten after every run")
    parser.add_argument("--budgets", type=int, nargs="+", default=BUDGETS)
    parser.add_argument("--models", nargs="+", default=[m[0] for m in MODELS], help="model labels to run")
    parser.add_argument("--datasets", nargs="+", default=[d for d, _ in IMAGES])
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=list(ATTACKS), metavar="ATTACK",
                        help=f"columns to run, of {list(ATTACKS)}")
    parser.add_argument("--mode", choices=["train", "eval"], default="train",
                        help="model mode of the clients' step (eval: BatchNorm uses running statistics)")
    parser.add_argument("--markdown", metavar="RESULTS", help="print the table of a result file and exit")
    args = parser.parse_args()
    if args.markdown:
        with open(args.markdown) as handle:
            print(markdown(json.load(handle)))
        return
    deadline = time.time() + args.deadline
    work = [(job, args.device, deadline) for job in jobs(args.budgets, args.models, args.datasets, args.attacks, args.mode)]
    results: list[dict] = []
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for result in pool.imap_unordered(_run, work):
            if result is not None:
                results.append(result)
                with open(args.out, "w") as handle:
                    json.dump(results, handle)
                print(json.dumps(result), flush=True)
    print(markdown(results))
    for r in results:
        if "error" in r:
            print("failed:", r)


if __name__ == "__main__":
    main()
