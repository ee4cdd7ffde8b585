"""DP audits against their goals, timed: ``python benchmarks/audit.py [--seeds 20] [--trials 1000]``.

For DP-SGD and DP-FedAvg at epsilon 2 (correct, and each planted bug), secure aggregation over
a cohort of 8 without DP, and distributed DP at epsilon 3 under it, runs ``gradleak audit`` on
independent seeds and prints how often epsilon_lower exceeds the accountant's (or the claimed)
epsilon, the median bound, and the seconds per audit. Threads are pinned to 1 per run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from gradleak.eval.audit import AuditConfig, audit

CASES = (  # (spec, claimed epsilon, goal)
    ("dp-sgd:epsilon=2", 2.0, "never above"),
    ("dp-sgd:epsilon=2,planted_bug=weak-noise", 2.0, "flagged"),
    ("dp-sgd:epsilon=2,clip=0.1,planted_bug=no-clip", 2.0, "flagged"),
    ("dp-fedavg:epsilon=2", 2.0, "never above"),
    ("dp-fedavg:epsilon=2,planted_bug=weak-noise", 2.0, "flagged"),
    ("dp-fedavg:epsilon=2,planted_bug=no-clip", 2.0, "flagged"),
    ("secagg", 3.0, "flagged"),
    ("dp-distributed:epsilon=3,clients=9 + secagg", 3.0, "never above"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--secagg-trials", type=int, default=400, help="trials for secure-aggregation cases (a protocol run each)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')}, torch threads 1")
    for spec, claimed, goal in CASES:
        trials = args.secagg_trials if "secagg" in spec else args.trials
        results = [audit(spec, AuditConfig(seed=s, trials=trials, canaries=1000)) for s in range(args.seeds)]
        above = sum(r.epsilon_lower > claimed for r in results)
        one = [r.one_run_epsilon_lower for r in results if r.one_run_epsilon_lower is not None]
        print(json.dumps({
            "defense": spec, "goal": goal, "claimed_epsilon": claimed, "seeds": args.seeds, "trials": 2 * trials,
            "above_claimed": above, "median_epsilon_lower": round(statistics.median(r.epsilon_lower for r in results), 3),
            "max_epsilon_lower": round(max(r.epsilon_lower for r in results), 3),
            "epsilon_cap": round(results[0].epsilon_cap, 3),
            "median_auc": round(statistics.median(r.auc for r in results), 3),
            "median_one_run": round(statistics.median(one), 3) if one else None,
            "seconds_per_audit": round(statistics.mean(r.seconds for r in results), 1),
        }), flush=True)


if __name__ == "__main__":
    main()
