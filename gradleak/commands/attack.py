"""``gradleak attack``: one attack on one (optionally defended) round, scored against the truth.

The round is built from a :class:`~gradleak.scenario.Scenario` (dataset examples or the
user's own image files); the attack sees only the server's view; the truth is brought in
afterwards to score it. Writes a PNG with the truth (top row) and the matched
reconstructions (bottom row); ``--json`` prints one JSON object instead of a summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gradleak.attacks import ATTACKS, build_attack
from gradleak.attacks.dlg import MAX_ITERATIONS
from gradleak.commands.options import SEED, field_type, in_dir, in_file, number, out_dir
from gradleak.compute import Compute
from gradleak.defenses import build_stack
from gradleak.device import resolve_device
from gradleak.errors import GradleakError
from gradleak.eval.metrics import Scores, format_db, jsonable, score
from gradleak.scenario import Scenario, build_round
from gradleak.servers import SERVERS, build_server
from gradleak.scenario import build_join_session
from gradleak.spec import config_fields, parse_spec
from gradleak.threat import Reconstruction, Truth


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attack",
        help="reconstruct a client's data from its update and score it",
        description=f"Run one attack ({', '.join(ATTACKS.names())}; options as "
        "NAME:key=value,...) on the update of one client and compare with its true data.",
    )
    parser.add_argument("--attack", default="dlg", metavar="SPEC", help="attack spec (default dlg)")
    parser.add_argument("--model", default="lenet-zhu", metavar="SPEC", help="model spec (default lenet-zhu)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", default="photos", help="dataset name (default photos)")
    source.add_argument("--image", nargs="+", type=in_file, metavar="PATH", help="your own image file(s) instead of a dataset")
    parser.add_argument("--index", type=field_type(Scenario, "index"), default=0, help="the victim's first example (default 0)")
    parser.add_argument("--batch-size", type=field_type(Scenario, "batch_size"), default=1, help="examples in the victim's update (default 1)")
    parser.add_argument("--distinct-labels", action="store_true", help="pick a batch with no repeated label")
    parser.add_argument("--label", type=field_type(Scenario, "labels"), nargs="+", metavar="L", help="labels of the --image files (default 0)")
    parser.add_argument("--num-classes", type=field_type(Scenario, "num_classes"), default=10, help="classes of the model for --image (default 10)")
    parser.add_argument("--channels", type=field_type(Scenario, "channels"), default=3, choices=(1, 3), help="channels --image is read with")
    parser.add_argument("--data-root", type=in_dir, help="folder of a torchvision dataset")
    parser.add_argument("--trained-epochs", type=field_type(Scenario, "trained_epochs"), default=0.0, help="train the model first (default 0)")
    parser.add_argument("--model-seed", type=SEED, default=0, help="seed of the model's initial weights")
    parser.add_argument("--model-mode", choices=("train", "eval"), default="train",
                        help="the mode clients compute updates in (BatchNorm statistics; default train)")
    parser.add_argument("--local-steps", type=field_type(Scenario, "local_steps"), default=1,
                        help="FedAvg: local SGD steps; more than 1 uploads a weight delta (default 1: FedSGD)")
    parser.add_argument("--local-lr", type=field_type(Scenario, "learning_rate"), default=0.1, help="FedAvg: client learning rate (default 0.1)")
    parser.add_argument("--local-batch-size", type=field_type(Scenario, "local_batch_size"), help="FedAvg: mini-batch per step (default: all)")
    parser.add_argument("--cohort-size", type=field_type(Scenario, "cohort_size"), default=1, help="clients in the round (default 1)")
    parser.add_argument("--between-rounds", choices=("exact", "fresh"), default="exact",
                        help="differencing: the other clients repeat their data (exact) or draw fresh examples (default exact)")
    parser.add_argument("--known-labels", action="store_true", help="grant the server the labels")
    parser.add_argument("--defense", action="append", default=[], metavar="SPEC", help="a defense (repeatable)")
    parser.add_argument("--server", default="honest", metavar="SPEC",
                        help=f"the server's behaviour ({', '.join(SERVERS.names())}; default honest)")
    parser.add_argument("--noise-seed", type=SEED, help="seed DP noise (experiments only; default: OS randomness)")
    parser.add_argument("--labels", choices=("joint", "auto", "idlg", "yin", "counts", "known"),
                        help="how the attack gets labels (default: the attack's own)")
    parser.add_argument("--iterations", type=number(int, 0, MAX_ITERATIONS), help="the attack's iteration budget")
    parser.add_argument("--seed", type=SEED, help="the attack's random seed (default: the spec's, else 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--out", type=out_dir, default="gradleak-out", help="folder for the PNG (default gradleak-out)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def scenario_from(args: argparse.Namespace) -> Scenario:
    return Scenario(
        dataset=args.dataset,
        model=args.model,
        index=args.index,
        batch_size=args.batch_size,
        distinct_labels=args.distinct_labels,
        images=tuple(args.image or ()),
        labels=tuple(args.label or ()),
        num_classes=args.num_classes,
        channels=args.channels,
        cohort_size=args.cohort_size,
        algorithm="fedavg" if args.local_steps > 1 else "fedsgd",
        local_steps=args.local_steps,
        learning_rate=args.local_lr,
        local_batch_size=args.local_batch_size,
        trained_epochs=args.trained_epochs,
        model_seed=args.model_seed,
        model_mode=args.model_mode,
        known_labels=args.known_labels,
        data_root=args.data_root,
    )


def attack_from(args: argparse.Namespace):
    spec = parse_spec(args.attack)
    fields = config_fields(ATTACKS.get(spec.name).Config)
    overrides = {}
    for key in ("iterations", "labels", "seed"):
        value = getattr(args, key)
        if value is None:
            continue
        if key not in fields:
            raise GradleakError(f"attack {spec.name!r} has no {key} setting; leave out --{key}")
        # a flag silently winning over the spec would run another attack than the one written
        if key in spec.params and spec.params[key] != str(value):
            raise GradleakError(f"--{key} {value} contradicts {key}={spec.params[key]} in --attack; give it once")
        overrides[key] = value
    return build_attack(args.attack, **overrides)


def run(args: argparse.Namespace) -> int:
    if args.image and args.batch_size != 1:
        raise GradleakError("--batch-size applies to --dataset; with --image every file is one example")
    if args.label and not args.image:
        raise GradleakError("--label gives the labels of --image files; dataset examples bring their own")
    attack = attack_from(args)
    scenario = scenario_from(args)
    server = build_server(args.server)
    device = resolve_device(args.device)
    if getattr(attack, "across_rounds", False):
        if args.server != "honest":
            raise GradleakError(f"attack {attack.name!r} differences an honest server's releases; leave out --server")
        round_ = build_join_session(scenario, build_stack(args.defense), device, args.noise_seed, args.between_rounds == "fresh")
    else:
        if args.between_rounds != "exact":
            raise GradleakError(f"--between-rounds applies to attacks across rounds (differencing), not {attack.name!r}")
        round_ = build_round(scenario, build_stack(args.defense), device, noise_seed=args.noise_seed, server=server)
    start = time.perf_counter()
    reconstruction = attack.reconstruct(round_.view)
    seconds = time.perf_counter() - start
    scores = score(reconstruction, round_.truth)
    source = "images" if args.image else f"{args.dataset}-{args.index}"
    seed = getattr(attack.config, "seed", None) or 0
    png = Path(args.out) / f"{attack.name}-{source}-b{len(round_.truth.labels)}-s{seed}.png"
    save_comparison(png, round_.truth, reconstruction, scores)
    result = {
        "attack": args.attack,
        "model": args.model,
        "source": [str(p) for p in args.image] if args.image else {"dataset": args.dataset, "index": args.index},
        "batch_size": len(round_.truth.labels),
        "defenses": list(round_.view.defenses),
        "server": args.server,
        "refused": {str(k): why for k, why in round_.refused.items()},  # client id -> why it refused the model
        **scores.summary(),
        "seconds": seconds,
        "iterations": int(reconstruction.info.get("evaluations", len(reconstruction.history))),
        "labels": None if reconstruction.labels is None else reconstruction.labels.tolist(),
        "true_labels": round_.truth.labels.tolist(),
        "device": str(device),
        "compute": Compute.current().record(),
        "png": str(png),
        "info": {k: v for k, v in reconstruction.info.items() if isinstance(v, (int, float, str, bool))},
    }
    if args.json:
        print(json.dumps(jsonable(result)))
    else:
        print(
            f"{attack.name} on {source} ({args.model}, {result['batch_size']} image(s)): "
            f"PSNR {format_db(scores.mean_psnr)} dB, SSIM {scores.mean_ssim:.3f}, "
            f"labels {scores.label_accuracy:.0%} right, {result['iterations']} iterations in {seconds:.1f} s"
        )
        print(f"truth and reconstruction: {png}")
        for client, why in round_.refused.items():
            print(f"client {client} refused the model it received: {why}")
    return 0


def save_comparison(path: Path, truth: Truth, reconstruction: Reconstruction, scores: Scores) -> None:
    """Truth on top, the reconstruction matched to each truth image below, PSNR under each pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(truth.images)
    figure, axes = plt.subplots(2, count, figsize=(1.6 * count + 0.4, 3.4), squeeze=False)
    for i, partner in enumerate(scores.order):
        guess = reconstruction.images[partner] if partner >= 0 else torch.full_like(truth.images[i], 0.5)
        for row, image in enumerate((truth.images[i], guess)):
            axis = axes[row][i]
            pixels = image.detach().cpu().permute(1, 2, 0).numpy()
            axis.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[1][i].set_xlabel(f"{format_db(scores.psnr[i])} dB", fontsize=8)
    axes[0][0].set_ylabel("truth", fontsize=8)
    axes[1][0].set_ylabel("attack", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
