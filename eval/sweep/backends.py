"""Where a sweep's tasks run: the process pool on this machine (default) or Ray tasks on a cluster.

The choice lives here, in :data:`BACKENDS`. Whatever the backend, the parent process stays the
only writer of the results file (:func:`~gradleak.eval.sweep.tasks.run_tasks` hands each finished
record to its ``finish``), so resuming a killed sweep works the same on every backend.

Ray (``pip install 'gradleak[ray]'``; Moritz et al., "Ray: A Distributed Framework for Emerging AI
Applications", OSDI 2018): each task is a ``ray.remote`` call, at most ``workers`` of them in
flight, collected with ``ray.wait`` as they finish. Without an address a local Ray starts with
``workers`` CPUs, no dashboard and no usage statistics, bound to the loopback interface; with
``address`` (or ``RAY_ADDRESS``) the sweep joins that cluster, whose nodes need gradleak (and any
plugin) installed. A task whose device is CUDA (or ``auto`` on a cluster with GPUs) asks Ray for
one GPU.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch

from gradleak.compute import Compute
from gradleak.errors import GradleakError
from gradleak.eval.sweep.plan import import_plugins
from gradleak.eval.sweep.tasks import Execute, Task, _attempt
from gradleak.progress import set_quiet

Finish = Callable[[Task, dict[str, Any] | None, str | None], None]
Backend = Callable[[Sequence[Task], Execute, int, Compute, Finish], None]
RAY_EXTRA = "pip install 'gradleak[ray]'"


def backend(name: str, address: str | None = None) -> Backend | None:
    """The runner for ``name``: ``None`` for the default process pool, which the runner owns."""
    if name not in BACKENDS:
        raise GradleakError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    if address is not None and name != "ray":
        raise GradleakError(f"--address {address!r} joins a Ray cluster; add --backend ray")
    return BACKENDS[name](address)


def gpus_for(device: str, cluster_gpus: float) -> int:
    """GPUs a task on ``device`` asks Ray for: one for CUDA, and for ``auto`` where the cluster has any."""
    if device.startswith("cuda") or (device == "auto" and cluster_gpus > 0):
        return 1
    return 0


def _ray_task(execute: Execute, task: Task, compute: Compute) -> tuple[dict[str, Any] | None, str | None]:
    """A cell as a Ray worker runs it: like a pool worker, under the run's Compute and with no inner bars."""
    set_quiet(True)
    import_plugins(task.plugins)
    with compute.applied():  # Ray reuses its workers: hand this one back with the settings it had
        return _attempt(execute, task)


def _start_ray(address: str | None, workers: int):
    try:
        import ray
    except ImportError:
        raise GradleakError(f"the ray backend needs Ray, which is not installed: {RAY_EXTRA}") from None
    if ray.is_initialized():  # the caller's own Ray session (a notebook, a test): use it as it is
        return ray, False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # Ray 2.x warns unless told the future default
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    else:
        # _node_ip_address keeps every Ray socket on the loopback interface: nothing leaves the machine
        ray.init(num_cpus=workers, num_gpus=torch.cuda.device_count(), include_dashboard=False,
                 _node_ip_address="127.0.0.1", logging_level="ERROR", log_to_driver=False)
    return ray, True


def _ray(address: str | None) -> Backend:
    def run(todo: Sequence[Task], execute: Execute, workers: int, compute: Compute, finish: Finish) -> None:
        ray, started = _start_ray(address, workers)
        pending: dict[Any, Task] = {}
        try:
            cluster_gpus = ray.cluster_resources().get("GPU", 0)
            remote = ray.remote(_ray_task)
            queue = list(todo)
            while queue or pending:
                while queue and len(pending) < workers:
                    task = queue.pop(0)
                    gpus = gpus_for(getattr(task, "device", "cpu"), cluster_gpus)
                    pending[remote.options(num_cpus=1, num_gpus=gpus).remote(execute, task, compute)] = task
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    finish(pending.pop(ref), *ray.get(ref))
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if started:
                ray.shutdown()

    return run


BACKENDS: dict[str, Callable[[str | None], Backend | None]] = {
    "process": lambda address: None,  # spawned worker processes on this machine (runner's own)
    "ray": _ray,
}
