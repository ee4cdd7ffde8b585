"""A curious (honest-but-curious) server as a Flower Strategy: it aggregates faithfully, and attacks.

In its aggregate step the server holds each node's reply; :class:`CuriousFedAvg` (Flower's
message-API ``FedAvg``) turns each one into a gradleak :class:`~gradleak.threat.ServerView` (the
update is the reply's arrays minus the arrays it sent, the FedAvg delta of McMahan et al.,
AISTATS 2017, Alg. 1), runs a registered attack on it, and appends a record to a ``results.jsonl``
that ``gradleak report`` reads like ``gradleak evaluate``'s. Under Flower's SecAgg+ workflow
(``SecAggPlusWorkflow`` with ``secaggplus_mod``, Bell et al., CCS 2020) the strategy is the legacy
one, :class:`CuriousLegacyFedAvg`, and what reaches its ``aggregate_fit`` is only the unmasked
aggregate: the view is then that aggregate (``aggregate=True``), as in gradleak's own rounds.

The attack sees only the view. Scoring needs the truth, which a real server never has: pass
``truth`` in experiments (PSNR/SSIM then go into the record); without it the record keeps the
reconstruction only, as kind ``"flower-reconstruction"``, which reports leave out.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from flwr.app import ArrayRecord, Message
from flwr.common import parameters_to_ndarrays
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.serverapp.strategy import FedAvg

import gradleak
from gradleak.eval.sweep.plan import seeded_attack
from gradleak.eval.sweep.execute import save_images
from gradleak.eval.metrics import score
from gradleak.eval.store import RESULTS, ResultStore, run_key
from gradleak.threat import LocalTraining, Normalization, ServerView, Truth

NUM_EXAMPLES = "num-examples"  # the message API's metric FedAvg weights by


@dataclass
class CuriousServer:
    """What the curious server knows of the federation (all public in FL) and where it writes.

    ``model`` is the architecture the arrays load into (a ``state_dict`` of the same keys);
    ``local`` the clients' training as the FL configuration fixes it; ``truth(node_ids)`` the data
    behind an update, for scoring only.
    """

    model: torch.nn.Module
    normalization: Normalization
    input_shape: tuple[int, int, int]  # (C, H, W) of one example
    num_classes: int
    local: LocalTraining
    attack: str = "dlg"  # any registered attack spec
    out: str | Path = "gradleak-out/flower"
    seed: int = 0  # the attack's seed
    truth: Callable[[tuple[int, ...]], Truth] | None = None
    label: str = "flower"

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.store = ResultStore(self.out / RESULTS)

    def load(self, arrays: Sequence[np.ndarray]) -> torch.nn.Module:
        """A copy of the architecture holding ``arrays`` (in ``state_dict`` order)."""
        model = copy.deepcopy(self.model)
        model.load_state_dict({n: torch.from_numpy(np.asarray(a).copy()) for n, a in zip(model.state_dict(), arrays)})
        return model

    def observe(self, server_round: int, node_ids: tuple[int, ...], sent: Sequence[np.ndarray],
                received: Sequence[np.ndarray], num_examples: int, aggregate: bool) -> dict[str, Any]:
        """Attack one update (``received - sent``, arrays in ``state_dict`` order) and record it."""
        model = self.load(sent)
        names = list(model.state_dict())
        delta = {n: torch.from_numpy(np.asarray(r, dtype=np.float32) - np.asarray(s, dtype=np.float32))
                 for n, s, r in zip(names, sent, received)}
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        view = ServerView(
            model=model, normalization=self.normalization, input_shape=self.input_shape, num_classes=self.num_classes,
            update=tuple(delta[n] for n in trainable), num_examples=num_examples, local=self.local,
            cohort_size=len(node_ids), aggregate=aggregate, defenses=("flower-secagg+",) if aggregate else (),
        )
        return self.attack_view(server_round, node_ids, view)

    def attack_view(self, server_round: int, node_ids: tuple[int, ...], view: ServerView) -> dict[str, Any]:
        """Run the attack on ``view``, whose data is that of ``node_ids``, and append its record."""
        attack = seeded_attack(self.attack, self.seed, f"attack {self.attack!r}")
        start = time.perf_counter()
        reconstruction = attack.reconstruct(view)
        seconds = time.perf_counter() - start
        config = {"flower": self.label, "round": server_round, "nodes": list(node_ids), "attack": self.attack,
                  "seed": self.seed}
        if view.server != "honest":  # honest records keep the keys they always had
            config["server"] = view.server
        key = run_key(config)
        defense = "secagg+ (Flower)" if "flower-secagg+" in view.defenses else "none"
        record: dict[str, Any] = {
            "key": key, "kind": "flower-reconstruction", "config": config,
            "label": {"scenario": f"{self.label} round {server_round}", "attack": self.attack,
                      "defense": defense, **({"server": view.server} if view.server != "honest" else {})},
            "seed": self.seed, "epsilon": None, "dp": [], "noise_seeded": False,
            "view": {"num_examples": view.num_examples, "cohort_size": view.cohort_size, "aggregate": view.aggregate,
                     "defenses": list(view.defenses)},
            "cost": {"attack_seconds": seconds, "update_bytes": sum(d.numel() * d.element_size() for d in view.update)},
            "attack_info": {k: v for k, v in reconstruction.info.items() if isinstance(v, (int, float, str, bool))},
            "flower": {"round": server_round, "node_ids": list(node_ids)},
            "gradleak": gradleak.__version__, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if self.truth is not None:
            truth = self.truth(node_ids)
            scores = score(reconstruction, truth)
            record.update(kind="attack", metrics={**scores.summary(), "success_rate": scores.success_rate()},
                          images=save_images(self.out, key, truth, reconstruction, scores))
        self.store.append(record)
        return record


def _ndarrays(record: ArrayRecord) -> list[np.ndarray]:
    return [a.numpy() for a in record.values()]


class CuriousFedAvg(FedAvg):
    """Flower's ``FedAvg`` (message API) that attacks every reply before aggregating as usual."""

    def __init__(self, server: CuriousServer, **fedavg: Any) -> None:
        super().__init__(**fedavg)
        self.server = server
        self.sent: dict[int, list[np.ndarray]] = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config, grid) -> Iterable[Message]:
        self.sent[server_round] = _ndarrays(arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        for reply in replies:
            if reply.has_content():
                metrics = next(iter(reply.content.metric_records.values()), {})
                self.server.observe(server_round, (int(reply.metadata.src_node_id),), self.sent[server_round],
                                    _ndarrays(reply.content[self.arrayrecord_key]),
                                    int(metrics.get(self.weighted_by_key, 1)), aggregate=False)
        return super().aggregate_train(server_round, replies)


class CuriousLegacyFedAvg(LegacyFedAvg):
    """Flower's legacy ``FedAvg``, for the SecAgg+ workflow: there it receives only the aggregate.

    Without secure aggregation each result is one node's reply; under ``SecAggPlusWorkflow``
    every result carries the same unmasked aggregate, which is attacked once, as an aggregate.
    """

    def __init__(self, server: CuriousServer, **fedavg: Any) -> None:
        super().__init__(**fedavg)
        self.server = server
        self.sent: dict[int, list[np.ndarray]] = {}

    def configure_fit(self, server_round, parameters, client_manager):
        self.sent[server_round] = parameters_to_ndarrays(parameters)
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round, results, failures):
        arrays = [(proxy, parameters_to_ndarrays(res.parameters), res.num_examples) for proxy, res in results]
        sent = self.sent[server_round]
        first = arrays[0][1] if arrays else None
        if len(arrays) > 1 and all(all(np.array_equal(a, b) for a, b in zip(first, arr)) for _, arr, _ in arrays):
            nodes = tuple(int(proxy.node_id) for proxy, _, _ in arrays)
            self.server.observe(server_round, nodes, sent, first, sum(n for _, _, n in arrays), aggregate=True)
        else:
            for proxy, arr, n in arrays:
                self.server.observe(server_round, (int(proxy.node_id),), sent, arr, n, aggregate=False)
        return super().aggregate_fit(server_round, results, failures)
