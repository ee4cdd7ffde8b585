"""What the Ray backend costs before any cell runs, next to the process pool.

    python benchmarks/ray_startup.py [--workers 2] [--tasks 20]

Times, on this machine: a local Ray's start (``ray.init`` until a first no-op task has returned),
the per-task overhead of ``tasks`` no-op tasks with ``workers`` in flight, and ``ray.shutdown``;
then the same for a spawned ``ProcessPoolExecutor`` (the default backend). A sweep's cells each
take seconds to minutes, so what matters is the fixed start-up against the sweep's length.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor


def noop(i: int) -> int:
    return i


def ray_costs(workers: int, tasks: int) -> dict[str, float]:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    start = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="ERROR",
             log_to_driver=False)
    remote = ray.remote(noop)
    ray.get(remote.remote(0))
    started = time.perf_counter() - start
    start = time.perf_counter()
    ray.get([remote.remote(i) for i in range(tasks)])
    per_task = (time.perf_counter() - start) / tasks
    start = time.perf_counter()
    ray.shutdown()
    return {"start_s": started, "per_task_s": per_task, "stop_s": time.perf_counter() - start}


def pool_costs(workers: int, tasks: int) -> dict[str, float]:
    start = time.perf_counter()
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    pool.submit(noop, 0).result()
    started = time.perf_counter() - start
    start = time.perf_counter()
    list(pool.map(noop, range(tasks)))
    per_task = (time.perf_counter() - start) / tasks
    start = time.perf_counter()
    pool.shutdown()
    return {"start_s": started, "per_task_s": per_task, "stop_s": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=20)
    args = parser.parse_args(argv)
    for name, costs in (("process pool", pool_costs), ("ray (local)", ray_costs)):
        c = costs(args.workers, args.tasks)
        print(f"{name:13s} start {c['start_s']:6.2f} s   per task {1000 * c['per_task_s']:7.2f} ms   "
              f"stop {c['stop_s']:5.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
