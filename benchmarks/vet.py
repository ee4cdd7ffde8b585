"""Client-side vetting: how far honest models stay from each threshold, and how far attacks cross it.

    python benchmarks/vet.py               # 20 honest FedSGD rounds per session, about a minute
    python benchmarks/vet.py --rounds 50   # the issue's 50 rounds (docs/lab/vet.md)

Honest sessions: each embedded dataset, the default model (lenet-zhu) and a ReLU MLP, untrained
or trained half an epoch first; each round 4 clients vet the global model on 8 fresh random
examples each, then the model takes the round's FedSGD step. Per session it prints the largest
share of copied rows, the smallest gradient ratio and the largest rare-row share seen, beside
vet's thresholds; then the same statistics for the malicious models of tests/defenses/test_vet.py.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import nn

from gradleak.data import load_dataset
from gradleak.defenses import build_defense, build_stack
from gradleak.defenses.vet import copy_share, probe, rare_share
from gradleak.federated import Client, run_round
from gradleak.models import build
from gradleak.servers.inconsistent import silence
from gradleak.training import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "defenses"))
from test_vet import batch, imprint_block, trap_rows  # noqa: E402  (the tests' malicious models)

VET = build_defense("vet").config
MODELS = ("lenet-zhu", "mlp:activation=relu")


def signals(model: nn.Module, x: torch.Tensor) -> tuple[float, float, float]:
    copies = max(copy_share(m, VET.collinear, VET.min_rows) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    ratios, first_out = probe(model, x)
    return copies, min(r for _, r in ratios), rare_share(first_out)


def honest(name: str, model_name: str, epochs: float, rounds: int, clients: int = 4, per_client: int = 8) -> tuple[float, float, float]:
    dataset = load_dataset(name)
    model = build(model_name, dataset.shape, dataset.num_classes, seed=0)
    train(model, dataset, epochs)
    worst = (0.0, math.inf, 0.0)
    for r in range(rounds):
        images, labels = batch(dataset, clients * per_client, seed=r)
        for k in range(clients):
            x = dataset.normalization.normalize(images[k * per_client:(k + 1) * per_client])
            c, g, f = signals(model, x)
            worst = (max(worst[0], c), min(worst[1], g), max(worst[2], f))
        cohort = [Client(k, images[k * per_client:(k + 1) * per_client], labels[k * per_client:(k + 1) * per_client]) for k in range(clients)]
        round_ = run_round(model, dataset.normalization, cohort, dataset.num_classes, defenses=build_stack([]))
        with torch.no_grad():
            for p, g in zip(model.parameters(), round_.released):
                p -= 0.1 * g
    return worst


def malicious() -> list[tuple[str, tuple[float, float, float]]]:
    rows = []
    for name in ("faces", "digits", "photos"):
        dataset = load_dataset(name)
        x8 = dataset.normalization.normalize(batch(dataset, 8, seed=8)[0])
        x64 = dataset.normalization.normalize(batch(dataset, 64, seed=64)[0])
        model = build("mlp:activation=relu", dataset.shape, dataset.num_classes, seed=0)
        rows.append((f"{name} inconsistent (dead copy)", signals(silence(model, 1e4), x8)))
        imprinted = build("mlp:activation=relu", dataset.shape, dataset.num_classes, seed=0)
        imprinted.net[1].load_state_dict(imprint_block(dataset.normalization.normalize(batch(dataset, 64, seed=1)[0]), bins=256).state_dict())
        rows.append((f"{name} imprint rows in place", signals(imprinted, x8)))
        trap_rows(model.net[1], dataset.normalization, dataset.shape[0])
        rows.append((f"{name} trap, 8 examples", signals(model, x8)))
        rows.append((f"{name} trap, 64 examples", signals(model, x64)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(f"thresholds: copies >= {VET.copies}, gradient ratio <= {VET.dead:g}, rare >= {VET.rare}")
    print(f"{'session':44s} {'copies':>7s} {'min grad ratio':>15s} {'rare':>6s}")
    for name in ("faces", "digits", "photos"):
        for model_name in MODELS:
            for epochs in (0, 0.5):
                c, g, f = honest(name, model_name, epochs, args.rounds)
                print(f"{f'{name} {model_name} {epochs} ep, {args.rounds} rounds':44s} {c:7.2f} {g:15.2e} {f:6.2f}", flush=True)
    for label, (c, g, f) in malicious():
        print(f"{label:44s} {c:7.2f} {g:15.2e} {f:6.2f}")


if __name__ == "__main__":
    main()
