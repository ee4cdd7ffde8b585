"""Run independent tasks resumably: skip the done ones, record each as it finishes, in parallel.

A task is any picklable object with a ``key`` (its identity in the results file), ``plugins``
(modules to import first) and a ``title`` (for messages); ``execute(task)`` turns it into a
record. The parent process alone appends to the results file
(:class:`~gradleak.eval.store.ResultStore`: one fsync-ed line per finished task), so a run
killed at any moment resumes by running the same command again.

Workers are ``spawn``-ed processes (fork would copy torch's thread pools and locks). Their
threads and CPU backend come from an explicit :class:`~gradleak.compute.Compute` (by default the
parent's own, which the ``gradleak`` command sets from ``--threads`` and ``--onednn``: one
thread unless asked, since the parallelism comes from the processes), and every record
carries it under ``compute``. A worker whose parent died
(a SIGKILL leaves the parent no time to clean up) notices and exits instead of lingering.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from gradleak.compute import Compute
from gradleak.errors import GradleakError
from gradleak.eval.sweep.plan import import_plugins
from gradleak.eval.store import ResultStore
from gradleak.progress import progress, set_quiet


class Task(Protocol):
    key: str
    plugins: tuple[str, ...]

    @property
    def title(self) -> str: ...


Execute = Callable[[Any], dict[str, Any]]


@dataclass
class Outcome:
    total: int
    skipped: int
    store: ResultStore
    finished: int = 0
    failures: list[tuple[Task, str]] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"{self.finished} run(s) finished"]
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        if self.failures:
            parts.append(f"{len(self.failures)} failed (rerun the same command to retry them)")
        return ", ".join(parts) + f" of {self.total}"


def run_tasks(
    tasks: Sequence[Task],
    results: str | Path,
    execute: Execute,
    workers: int = 1,
    compute: Compute | None = None,
    backend: Callable[[Sequence[Task], Execute, int, Compute, Callable[..., None]], None] | None = None,
) -> Outcome:
    """Execute the tasks whose key is not yet in ``results``, appending each record as it finishes.

    ``execute`` must be a module-level function (it is sent to the workers by name). A task
    that raises :class:`GradleakError` is reported in the outcome and not recorded, so the next
    invocation retries it; the others go on. ``compute``: the settings every task runs under
    (default: this process's current ones; other ones run in a worker process even with
    ``workers=1``, so the caller's settings are never changed). ``backend`` runs the tasks elsewhere (Ray: see
    :mod:`~gradleak.eval.sweep.backends`) under the same ``compute`` and hands each result to the same
    ``finish``; ``None`` is the process pool.
    """
    compute = compute or Compute.current()
    store = ResultStore(results)
    todo = [t for t in tasks if t.key not in store]
    outcome = Outcome(total=len(tasks), skipped=len(tasks) - len(todo), store=store)
    if not todo:
        return outcome
    bar = progress(total=len(todo), desc="runs", unit="run", leave=True)

    def finish(task: Task, record: dict[str, Any] | None, error: str | None) -> None:
        if record is not None:
            store.append({**record, "compute": compute.record()})
            outcome.finished += 1
        else:
            outcome.failures.append((task, error or "failed"))
            bar.write(f"run {task.key} ({task.title}) failed: {error}")
        bar.update(1)

    try:
        if backend is not None:
            backend(todo, execute, workers, compute, finish)
        elif workers <= 1 and compute == Compute.current():
            for task in todo:
                finish(task, *_attempt(execute, task))
        else:  # other settings than the caller's run in worker processes: the caller's own stay untouched
            _parallel(todo, execute, max(workers, 1), compute, finish)
    finally:
        bar.close()
    return outcome


def _attempt(execute: Execute, task: Task) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return execute(task), None
    except GradleakError as exc:
        return None, str(exc)


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(parent: int, plugins: Sequence[str], compute: Compute) -> None:
    compute.apply()
    set_quiet(True)  # one overall bar in the parent; workers' inner bars would garble it
    import_plugins(plugins)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _parallel(
    todo: Sequence[Task], execute: Execute, workers: int, compute: Compute, finish: Callable[..., None]
) -> None:
    plugins = tuple(dict.fromkeys(p for t in todo for p in t.plugins))
    with ProcessPoolExecutor(
        max_workers=min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker, initargs=(os.getpid(), plugins, compute),
    ) as pool:
        pending: dict[Future, Task] = {pool.submit(_attempt, execute, task): task for task in todo}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    finish(task, *future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
