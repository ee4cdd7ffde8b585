"""A Flower federation with gradleak inside: a defense as a client Mod, a curious server as the strategy.

    pip install 'gradleak[flower]'
    python examples/flower/curious_server.py [--defense prune:ratio=0.9] [--out gradleak-out/flower]
    gradleak report gradleak-out/flower/results.jsonl --out gradleak-out/flower/report

Four nodes, each holding one face of gradleak's embedded ``faces`` data, train LeNet (Zhu et al.)
for two FedAvg rounds with plain torch. The server is Flower's FedAvg, made curious: it inverts
every reply with iDLG and records how well it recovered each node's face. Everything runs in this
process (Flower's message API over an in-process grid: no network, no Ray).
"""

from __future__ import annotations

import argparse
import logging

import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from gradleak.data import load_dataset
from gradleak.flower import CuriousFedAvg, CuriousServer, InProcessGrid, defense_mod
from gradleak.models import build
from gradleak.threat import LocalTraining, Truth

NODES, ROUNDS, LEARNING_RATE = 4, 2, 0.01
DATA = load_dataset("faces")


def new_model() -> torch.nn.Module:
    return build("lenet-zhu", DATA.shape, DATA.num_classes, seed=0)


def node_data(node_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    k = InProcessGrid.partition(node_id)
    return DATA.get([k])


def client_app(mods) -> ClientApp:
    app = ClientApp(mods=mods)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        model = new_model()
        model.load_state_dict(message.content["arrays"].to_torch_state_dict())
        images, labels = node_data(int(context.node_id))
        model.zero_grad()
        F.cross_entropy(model(DATA.normalization.normalize(images)), labels).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= LEARNING_RATE * p.grad
        return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()),
                                   "metrics": MetricRecord({"num-examples": len(labels)})}), reply_to=message)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--defense", help="a client-stage defense spec, e.g. prune:ratio=0.9 or quantize:bits=4")
    parser.add_argument("--attack", default="idlg:iterations=300,restarts=1")
    parser.add_argument("--out", default="gradleak-out/flower")
    args = parser.parse_args()
    logging.getLogger("flwr").setLevel(logging.WARNING)

    def truth(node_ids: tuple[int, ...]) -> Truth:  # for scoring only: the attack never sees it
        parts = [node_data(n) for n in node_ids]
        return Truth(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    server = CuriousServer(new_model(), DATA.normalization, DATA.shape, DATA.num_classes,
                           LocalTraining("fedavg", 1, LEARNING_RATE), attack=args.attack, out=args.out, truth=truth,
                           label=f"flower, {args.defense or 'no defense'}")
    strategy = CuriousFedAvg(server, fraction_evaluate=0.0, min_available_nodes=NODES)
    mods = [defense_mod(args.defense)] if args.defense else []
    strategy.start(InProcessGrid(client_app(mods), NODES), ArrayRecord(new_model().state_dict()), num_rounds=ROUNDS)
    for record in server.store.records:
        print(f"round {record['flower']['round']}, node {record['flower']['node_ids'][0]}: "
              f"PSNR {record['metrics']['psnr']:.1f} dB")
    print(f"report: gradleak report {args.out}/results.jsonl --out {args.out}/report")


if __name__ == "__main__":
    main()
