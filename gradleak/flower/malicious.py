"""A malicious server as a Flower Strategy: model inconsistency through Flower's SecAgg+ workflow.

Pasquini, Francati, Ateniese, "Eluding Secure Aggregation in Federated Learning via Model
Inconsistency" (CCS 2022): secure aggregation never checks that every node trained the same
model. :class:`InconsistentLegacyFedAvg` lets a gradleak :class:`~gradleak.servers.Server` (by
default ``inconsistent:target=0``) build the model each sampled node receives in
``configure_fit`` (the target, the ``target``-th node by id, gets the real model; the others a
copy whose update is zero). Under ``SecAggPlusWorkflow`` its ``aggregate_fit`` receives only the
aggregate ``A = sum_k clip(r_k w'_k) / sum_k r_k`` (``r_k = min(n_k / max_weight, 1)``, Flower's
weighting and clipping before quantisation); subtracting what the silenced nodes returned
unchanged, ``sum_k clip(r_k w_k) / sum_k r_k``, leaves the target's update diluted by its share
of the weights, which :meth:`Server.observe` undoes before the attack runs on it.

Flower's SecAgg+ runs only with legacy strategies, hence a subclass of
:class:`~gradleak.flower.strategy.CuriousLegacyFedAvg`. The next global model is the real one
plus the target's update (the silenced copies never enter it), so the federation keeps training.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays

from gradleak.errors import GradleakError
from gradleak.flower.strategy import CuriousLegacyFedAvg, CuriousServer
from gradleak.servers import Server, ServerContext, build_server
from gradleak.threat import ServerView

log = logging.getLogger(__name__)


class InconsistentLegacyFedAvg(CuriousLegacyFedAvg):
    """Flower's legacy ``FedAvg`` sending per-node models built by ``server`` and attacking its target.

    ``secaggplus``: the ``SecAggPlusWorkflow`` the round runs under (its ``clipping_range`` and
    ``max_weight`` shape the aggregate); ``None`` when the strategy sees each node's reply.
    """

    def __init__(self, curious: CuriousServer, server: str | Server = "inconsistent:target=0",
                 secaggplus: Any = None, **fedavg: Any) -> None:
        super().__init__(curious, **fedavg)
        self.malicious = build_server(server) if isinstance(server, str) else server
        if self.malicious.target is None:
            raise GradleakError(f"server {self.malicious.describe()!r} targets no node; use CuriousLegacyFedAvg "
                                "for an honest server, or a malicious spec such as inconsistent:target=0")
        self.secaggplus = secaggplus
        self.sent_to: dict[int, dict[int, list[np.ndarray]]] = {}  # round -> node id -> arrays sent
        self.targets: dict[int, int] = {}  # round -> the target's node id

    def configure_fit(self, server_round, parameters, client_manager):
        instructions = sorted(super().configure_fit(server_round, parameters, client_manager),
                              key=lambda pair: int(pair[0].node_id))
        context = ServerContext(self.server.input_shape, self.server.num_classes)
        models = self.malicious.models(self.server.load(self.sent[server_round]), len(instructions), context)
        self.sent_to[server_round] = {}
        personal = []
        for (proxy, fitins), model in zip(instructions, models):
            arrays = [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]
            self.sent_to[server_round][int(proxy.node_id)] = arrays
            personal.append((proxy, FitIns(ndarrays_to_parameters(arrays), dict(fitins.config))))
        self.targets[server_round] = int(instructions[self.malicious.target][0].node_id)
        return personal

    def aggregate_fit(self, server_round, results, failures):
        if not results:
            return None, {}
        sent = self.sent_to[server_round]
        replies = [(int(proxy.node_id), parameters_to_ndarrays(res.parameters), res.num_examples)
                   for proxy, res in results]
        secure = len(replies) > 1 and all(
            all(np.array_equal(a, b) for a, b in zip(replies[0][1], arrays)) for _, arrays, _ in replies)
        if secure:  # every result carries the same unmasked aggregate
            clip = self.secaggplus.clipping_range if self.secaggplus is not None else np.inf
            max_weight = self.secaggplus.max_weight if self.secaggplus is not None else np.inf
            ratios = [min(n / max_weight, 1.0) if np.isfinite(max_weight) else float(n) for _, _, n in replies]
            aggregate = replies[0][1]
        else:  # plain FedAvg: the example-weighted mean of the replies
            clip, ratios = np.inf, [float(n) for _, _, n in replies]
            aggregate = [sum(r * arrays[i] for r, (_, arrays, _) in zip(ratios, replies)) / sum(ratios)
                         for i in range(len(replies[0][1]))]
        # what the nodes would have returned had none of them trained, through the same weighting
        unchanged = [sum(np.clip(r * sent[nid][i], -clip, clip) for r, (nid, _, _) in zip(ratios, replies)) / sum(ratios)
                     for i in range(len(aggregate))]
        target = self.targets[server_round]
        if target not in {nid for nid, _, _ in replies}:  # its update is not in the aggregate: nothing to see
            log.warning("round %s: target node %s dropped out; the global model stays as it was", server_round, target)
            return ndarrays_to_parameters(sent[target]), {}
        model = self.server.load(sent[target])
        names = list(model.state_dict())
        mean = {n: torch.from_numpy(np.asarray(a, dtype=np.float32) - np.asarray(u, dtype=np.float32))
                for n, a, u in zip(names, aggregate, unchanged)}
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        in_sum = dict((nid, n) for nid, _, n in replies)
        weights = [in_sum.get(nid, 0) for nid in sorted(sent)]
        view_model, update = self.malicious.observe(model, tuple(mean[n] for n in trainable), weights)
        view = ServerView(
            model=view_model, normalization=self.server.normalization, input_shape=self.server.input_shape,
            num_classes=self.server.num_classes, update=update, num_examples=in_sum[target], local=self.server.local,
            cohort_size=len(replies), aggregate=True, defenses=("flower-secagg+",) if secure else (),
            server=self.malicious.describe(), secrets=dict(self.malicious.secrets),
        )
        self.server.attack_view(server_round, (target,), view)
        return ndarrays_to_parameters(self._next_global(sent[target], view_model, update)), {}

    def _next_global(self, real: list[np.ndarray], view_model: torch.nn.Module, update) -> list[np.ndarray]:
        """The real model plus the target's update on what the view shows; everything else unchanged."""
        moved = dict(zip([n for n, p in view_model.named_parameters() if p.requires_grad], update))
        return [a + moved[n].numpy() if n in moved else a for n, a in zip(view_model.state_dict(), real)]
