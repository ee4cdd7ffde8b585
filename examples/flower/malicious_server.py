"""A malicious Flower server that sees one node's update through SecAgg+, and the Mod that stops it.

    pip install 'gradleak[flower]'
    python examples/flower/malicious_server.py [--target 2] [--defend] [--out gradleak-out/flower-malicious]

Four nodes, each holding one face of gradleak's embedded ``faces`` data, train LeNet (Zhu et al.)
with plain torch under Flower's own SecAgg+ workflow (``DefaultWorkflow`` + ``SecAggPlusWorkflow``,
``secaggplus_mod``). The server sends the target the real model and the others a silenced copy
(Pasquini et al., CCS 2022), so the secure aggregate is the target's update, which iDLG inverts.
With ``--defend`` the nodes run ``dead_layer_mod``: the silenced ones refuse and SecAgg+ abandons
the round. Everything runs in this process (an in-process grid: no network, no Ray).
"""

from __future__ import annotations

import argparse
import logging

import torch
import torch.nn.functional as F
from flwr.app import Context, RecordDict
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.server import ServerConfig
from flwr.server.client_manager import SimpleClientManager
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

from gradleak.data import load_dataset
from gradleak.flower import CuriousServer, InconsistentLegacyFedAvg, InProcessGrid, dead_layer_mod
from gradleak.models import build
from gradleak.threat import LocalTraining, Truth

NODES, LEARNING_RATE = 4, 0.01
DATA = load_dataset("faces")


def new_model() -> torch.nn.Module:
    return build("lenet-zhu", DATA.shape, DATA.num_classes, seed=0)


def node_batch(context: Context) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = DATA.get([InProcessGrid.partition(int(context.node_id))])
    return DATA.normalization.normalize(images), labels


class FaceClient(NumPyClient):
    def __init__(self, context: Context) -> None:
        self.context = context

    def fit(self, parameters, config):
        model = new_model()
        model.load_state_dict({k: torch.from_numpy(p.copy()) for k, p in zip(model.state_dict(), parameters)})
        x, y = node_batch(self.context)
        F.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= LEARNING_RATE * p.grad
        return [t.detach().numpy() for t in model.state_dict().values()], len(y), {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=int, default=2, help="the node (0-3) the server singles out")
    parser.add_argument("--defend", action="store_true", help="nodes refuse models with dead layers")
    parser.add_argument("--attack", default="idlg:iterations=300,restarts=1")
    parser.add_argument("--out", default="gradleak-out/flower-malicious")
    args = parser.parse_args()
    logging.getLogger("flwr").setLevel(logging.ERROR)

    def truth(node_ids: tuple[int, ...]) -> Truth:  # for scoring only: the attack never sees it
        images, labels = DATA.get([InProcessGrid.partition(n) for n in node_ids])
        return Truth(images, labels)

    mods = [dead_layer_mod(new_model, node_batch)] if args.defend else []
    grid = InProcessGrid(ClientApp(client_fn=lambda c: FaceClient(c).to_client(), mods=[*mods, secaggplus_mod]), NODES)
    server = CuriousServer(new_model(), DATA.normalization, DATA.shape, DATA.num_classes,
                           LocalTraining("fedavg", 1, LEARNING_RATE), attack=args.attack, out=args.out, truth=truth,
                           label=f"flower malicious, {'dead_layer_mod' if args.defend else 'no defense'}")
    secaggplus = SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2, max_weight=1.0)
    initial = ndarrays_to_parameters([t.numpy() for t in new_model().state_dict().values()])
    strategy = InconsistentLegacyFedAvg(server, f"inconsistent:target={args.target}", secaggplus=secaggplus,
                                        initial_parameters=initial, fraction_fit=1.0, fraction_evaluate=0.0,
                                        min_fit_clients=NODES, min_available_clients=NODES)
    context = LegacyContext(Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={}),
                            config=ServerConfig(num_rounds=1), strategy=strategy, client_manager=SimpleClientManager())
    DefaultWorkflow(fit_workflow=secaggplus)(grid, context)

    for record in server.store.records:
        print(f"round {record['flower']['round']}: the aggregate of {record['view']['cohort_size']} nodes is "
              f"node {record['flower']['node_ids'][0]}'s update; iDLG PSNR {record['metrics']['psnr']:.1f} dB")
    if not server.store.records:
        print("no aggregate: the silenced nodes refused their models and SecAgg+ abandoned the round")


if __name__ == "__main__":
    main()
