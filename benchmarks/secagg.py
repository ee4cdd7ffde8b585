"""Secure aggregation: what it costs, how that grows with the cohort, and how it compares to Flower.

    python benchmarks/secagg.py                 # headline run + growth sweep
    python benchmarks/secagg.py --flower        # + Flower's SecAgg / SecAgg+ on the same sizes
    python benchmarks/secagg.py --quick         # small sizes, a minute or so

1. Headline: n = 1,000 clients, d = 100,000, 20% of clients drop after ShareKeys,
   SecAgg+ with the default graph: total time, bytes per client, expansion over a float32 upload.
2. Growth: n from 100 to 10,000 (SecAgg+ defaults, 20% dropout), per-client and server cost.
3. Flower (needs the ``bench`` extra): Flower's own ``SecAggWorkflow`` / ``SecAggPlusWorkflow``
   server workflows and ``secaggplus_mod`` client mod, run unchanged in this process: a
   :class:`InProcessGrid` plays the network by handing each message (deep-copied, as a wire
   would) to the addressed node's ``ClientApp``. Ours runs on the same vectors in the same run,
   with the same neighbourhood and threshold; both aggregates are checked against the float mean.

All parties run one after another in this one process; "client s" is one client's compute
(mean), "server s" the server's, and "wall s" everything including generating the test vectors.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradleak.defenses.secagg.simulation import random_input, simulate
from gradleak.defenses.secagg.graph import plan

CLIP = 1.0  # random_input is uniform in [-1, 1]

def run_ours(
    clients: int, dim: int, dropout: float = 0.0, neighbors: int | None = None, threshold: int | None = None,
    seed: int = 0, active: bool | None = None,
) -> dict[str, Any]:
    """One session on random vectors, checked against the plaintext sum (``gradleak secagg``'s run)."""
    # the protocol as Flower runs it, with no model bound (benchmarks/secagg_bind.py prices binding)
    sim = simulate(clients, dim, dropout, "mask", neighbors, threshold, active=active, seed=seed, bind_model=False)
    return {
        **sim.result.summary(),
        "dropout": dropout,
        "wall_seconds": sim.seconds,
        "correct": sim.correct,
        "max_error": sim.max_error,
        "aggregate": sim.mean,
    }


# Flower, run in-process


def run_flower(clients: int, dim: int, num_shares: int | None, threshold: int, seed: int = 0) -> dict[str, Any]:
    """Flower's SecAgg (``num_shares=None``: complete graph) or SecAgg+ on the same vectors."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server import ServerConfig
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import SecAggPlusWorkflow, SecAggWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey

    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    logging.getLogger("flwr").setLevel(logging.ERROR)
    # What Flower's runtime sets for the ServerApp process before it builds messages.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 0, SUPERLINK_NODE_ID, 0
    grid_class = _in_process_grid()

    class VectorClient(NumPyClient):
        def __init__(self, u: int) -> None:
            self.u = u

        def fit(self, parameters, config):
            return [random_input(seed, self.u, dim).astype(np.float32)], 1, {}

    node_ids = [SUPERLINK_NODE_ID + 1 + u for u in range(clients)]
    app = ClientApp(
        client_fn=lambda context: VectorClient(int(context.node_id) - SUPERLINK_NODE_ID - 1).to_client(),
        mods=[secaggplus_mod],
    )
    grid = grid_class(app, node_ids)
    manager = SimpleClientManager()
    for nid in node_ids:
        manager.register(GridClientProxy(node_id=nid, grid=grid, run_id=0))
    context = LegacyContext(
        Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={}),
        config=ServerConfig(num_rounds=1),
        strategy=FedAvg(fraction_fit=1.0, min_fit_clients=clients, min_available_clients=clients),
        client_manager=manager,
    )
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: 1})
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters([np.zeros(dim, np.float32)]), True
    )
    if num_shares is None:
        workflow = SecAggWorkflow(reconstruction_threshold=threshold, clipping_range=CLIP)
    else:
        workflow = SecAggPlusWorkflow(num_shares=num_shares, reconstruction_threshold=threshold, clipping_range=CLIP)
    start = time.perf_counter()
    workflow(grid, context)
    wall = time.perf_counter() - start - grid.network_seconds  # the copies stand in for the network
    record: ArrayRecord = context.state.array_records[MAIN_PARAMS_RECORD]
    (aggregate,) = parameters_to_ndarrays(compat.arrayrecord_to_parameters(record, True))
    aggregate = aggregate.astype(np.float64)
    mean = sum(random_input(seed, u, dim) for u in range(clients)) / clients
    return {
        "wall_seconds": wall,
        "client_seconds": grid.client_seconds / clients,
        "server_seconds": wall - grid.client_seconds,
        "masked_entry_bytes": grid.masked_entry_bytes,
        "max_error": float(np.abs(aggregate - mean).max()),
        "aggregate": aggregate,
    }


def _in_process_grid():
    """A Flower ``Grid`` whose network is a loop over the nodes' ``ClientApp`` in this process."""
    from flwr.app import Context, RecordDict
    from flwr.serverapp.grid import Grid

    class InProcessGrid(Grid):
        def __init__(self, app, node_ids):
            self.app, self.node_ids = app, node_ids
            self.contexts = {
                nid: Context(run_id=0, node_id=nid, node_config={}, state=RecordDict(), run_config={}) for nid in node_ids
            }
            self.client_seconds = 0.0
            self.network_seconds = 0.0
            self.masked_entry_bytes = 0

        def set_run(self, run):
            self._run = run

        @property
        def run(self):
            return self._run

        def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
            from flwr.app import Message

            return Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)

        def get_node_ids(self):
            return list(self.node_ids)

        def push_messages(self, messages):
            raise NotImplementedError("messages go through send_and_receive in this grid")

        def pull_messages(self, message_ids):
            raise NotImplementedError("messages go through send_and_receive in this grid")

        def send_and_receive(self, messages, *, timeout=None):
            replies = []
            for message in messages:
                start = time.perf_counter()
                delivered = copy.deepcopy(message)  # what a wire does: the receiver gets its own copy
                self.network_seconds += time.perf_counter() - start
                start = time.perf_counter()
                reply = self.app(delivered, self.contexts[message.metadata.dst_node_id])
                self.client_seconds += time.perf_counter() - start
                self._record_masked(reply)
                replies.append(reply)
            return replies

        def _record_masked(self, reply):
            from flwr.common import bytes_to_ndarray
            from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

            if reply.has_content() and RECORD_KEY_CONFIGS in reply.content.config_records:
                masked = reply.content.config_records[RECORD_KEY_CONFIGS].get(Key.MASKED_PARAMETERS)
                if masked:
                    self.masked_entry_bytes = bytes_to_ndarray(masked[-1]).dtype.itemsize

    return InProcessGrid


# Reporting


@dataclass
class Table:
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]

    def show(self) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) for i, c in enumerate(self.columns)]
        line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
        return "\n".join([line(self.columns), line(tuple("-" * w for w in widths)), *map(line, self.rows)])


def cost_row(r: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(r["clients"]), str(r["dim"]), f"{r['dropout']:.0%}", str(r["neighbors"]), str(r["threshold"]),
        f"{r['client_bytes_sent'] / 1024:,.1f}", f"{r['expansion']:.3f}", f"{r['upload_expansion']:.3f}",
        f"{r['client_seconds']:.3f}", f"{r['server_seconds']:.2f}", f"{r['wall_seconds']:.1f}",
        "yes" if r["correct"] else "NO",
    )


COST_COLUMNS = ("clients", "dim", "dropout", "k", "t", "KiB sent/client", "expansion", "upload exp.",
                "client s", "server s", "wall s", "exact")


def flower_comparison(clients: int, dim: int, neighbors: int, seed: int) -> list[dict[str, Any]]:
    rows = []
    for label, k in (("complete graph (SecAgg)", None), (f"{neighbors} neighbours (SecAgg+)", neighbors)):
        m = clients if k is None else k + 1
        threshold = m // 2 + 1
        # Flower's SecAgg(+) is passive: compare like with like.
        ours = run_ours(clients, dim, neighbors=clients - 1 if k is None else k, threshold=threshold, seed=seed,
                        active=False)
        flower = run_flower(clients, dim, None if k is None else m, threshold, seed)
        rows.append({
            "setting": label, "clients": clients, "dim": dim, "threshold": threshold,
            "ours_seconds": ours["wall_seconds"], "flower_seconds": flower["wall_seconds"],
            "speedup": flower["wall_seconds"] / ours["wall_seconds"],
            "ours_client_seconds": ours["client_seconds"], "flower_client_seconds": flower["client_seconds"],
            "ours_server_seconds": ours["server_seconds"], "flower_server_seconds": flower["server_seconds"],
            "ours_correct": ours["correct"], "ours_max_error": ours["max_error"],
            "flower_max_error": flower["max_error"],
            "max_difference": float(np.abs(ours["aggregate"] - flower["aggregate"]).max()),
            "ours_entry_bytes": 4, "flower_entry_bytes": flower["masked_entry_bytes"],
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--flower", action="store_true", help="also run Flower's SecAgg and SecAgg+ (bench extra)")
    parser.add_argument("--skip-headline", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--sweep-dim", type=int, default=10_000, help="vector length for the growth sweep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write all results to this file")
    args = parser.parse_args(argv)
    headline_n, headline_d = (200, 10_000) if args.quick else (1000, 100_000)
    sweep = (50, 100, 200) if args.quick else (100, 300, 1000, 3000, 10_000)
    flower_n, flower_d = (20, 10_000) if args.quick else (100, 100_000)
    results: dict[str, Any] = {}

    if not args.skip_headline:
        print(f"== Headline: {headline_n} clients, d = {headline_d:,}, 20% drop after ShareKeys, SecAgg+ defaults")
        r = run_ours(headline_n, headline_d, dropout=0.2, seed=args.seed)
        print(plan(headline_n).describe(0.2))
        print(Table(COST_COLUMNS, [cost_row(r)]).show())
        print(f"total {r['wall_seconds']:.1f} s; per-client upload {r['client_bytes_sent'] / 1e6:.3f} MB vs "
              f"{4 * headline_d / 1e6:.3f} MB float32 in the clear; expansion {r['expansion']:.3f}x "
              f"(upload alone {r['upload_expansion']:.3f}x); the seed claimed 2-5x\n")
        results["headline"] = {k: v for k, v in r.items() if k != "aggregate"}

    if not args.skip_sweep:
        print(f"== Growth: SecAgg+ defaults, d = {args.sweep_dim:,}, 20% drop after ShareKeys")
        rows = []
        for n in sweep:
            r = run_ours(n, args.sweep_dim, dropout=0.2, seed=args.seed)
            rows.append({k: v for k, v in r.items() if k != "aggregate"})
            print(f"  n = {n:,}: {r['wall_seconds']:.1f} s", flush=True)
        print(Table(COST_COLUMNS, [cost_row(r) for r in rows]).show() + "\n")
        results["sweep"] = rows

    if args.flower:
        print(f"== Flower vs ours: {flower_n} clients, d = {flower_d:,}, no dropout, threshold a majority")
        rows = flower_comparison(flower_n, flower_d, 10, args.seed)
        table = Table(
            ("setting", "ours s", "Flower s", "speedup", "ours client s", "Flower client s", "ours server s",
             "Flower server s", "B/entry ours|Flower", "max err ours|Flower", "max |ours-Flower|"),
            [(r["setting"], f"{r['ours_seconds']:.1f}", f"{r['flower_seconds']:.1f}", f"{r['speedup']:.1f}x",
              f"{r['ours_client_seconds']:.3f}", f"{r['flower_client_seconds']:.3f}",
              f"{r['ours_server_seconds']:.2f}", f"{r['flower_server_seconds']:.2f}",
              f"{r['ours_entry_bytes']}|{r['flower_entry_bytes']}",
              f"{r['ours_max_error']:.1e}|{r['flower_max_error']:.1e}", f"{r['max_difference']:.1e}")
             for r in rows],
        )
        print(table.show())
        results["flower"] = rows

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
