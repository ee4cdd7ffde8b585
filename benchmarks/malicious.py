"""Malicious servers read by the analytic attack: the table of docs/benchmarks.md ("Malicious servers").

Each row runs one round (victim data from index 0, the rest of the dataset as the server's public
data) and counts the victim images the attack gives back at >= 60 dB after matching. ``--honest``
adds the honest server on the trap rows' model, for comparison (slow: every row mixes images).

    python benchmarks/malicious.py [--honest]
"""

from __future__ import annotations

import argparse
import time

from gradleak.attacks import build_attack
from gradleak.defenses import build_stack
from gradleak.eval.metrics import score
from gradleak.scenario import Scenario, build_round
from gradleak.servers import build_server

WIDE_RELU = "mlp:activation=relu,hidden=4096/256"
ROWS = [  # dataset, model, server, defenses, clients, images per client
    ("digits", "lenet-zhu", "imprint:bins=128", [], 1, 64),
    ("faces", "lenet-zhu", "imprint:bins=128", [], 1, 64),
    ("digits", "lenet-zhu", "imprint:bins=128", ["secagg"], 8, 8),
    ("digits", "lenet-zhu", "imprint:bins=16,one_shot=true,aggregate=1024,statistic=random,reach=2", ["secagg"], 32, 32),
    ("digits", WIDE_RELU, "trap:scale=0.9", [], 1, 64),
    ("faces", WIDE_RELU, "trap:scale=0.95", [], 1, 64),
]
HONEST = [("digits", WIDE_RELU, "honest", [], 1, 64), ("faces", WIDE_RELU, "honest", [], 1, 64)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--honest", action="store_true", help="add the honest server on the trap rows' model")
    args = parser.parse_args()
    print("| dataset | model | server | defense | clients x images | exact (>= 60 dB) | best dB | s |")
    print("|---|---|---|---|---|---|---|---|")
    for dataset, model, server, defenses, clients, images in ROWS + (HONEST if args.honest else []):
        start = time.perf_counter()
        scenario = Scenario(dataset=dataset, model=model, batch_size=images, cohort_size=clients)
        round_ = build_round(scenario, build_stack(defenses), server=build_server(server))
        scores = score(build_attack("analytic").reconstruct(round_.view), round_.truth)
        exact, total = sum(p >= 60 for p in scores.psnr), len(scores.psnr)
        print(f"| {dataset} | {model} | {server} | {'+'.join(defenses) or 'none'} | {clients} x {images} "
              f"| {exact}/{total} ({exact / total:.0%}) | {max(scores.psnr):.1f} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
