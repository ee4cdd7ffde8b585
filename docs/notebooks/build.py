"""Write the teaching notebooks (``python docs/notebooks/build.py``), without outputs.

Each notebook is a list of (kind, source) cells; editing them here keeps the .ipynb files
reviewable as code and free of outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def notebook(cells: list[tuple[str, str]]) -> dict:
    def cell(index: int, kind: str, source: str) -> dict:
        lines = source.strip("\n").splitlines(keepends=True)
        if kind == "md":
            return {"cell_type": "markdown", "id": f"cell-{index}", "metadata": {}, "source": lines}
        return {"cell_type": "code", "id": f"cell-{index}", "execution_count": None, "metadata": {}, "outputs": [],
                "source": lines}

    return {
        "cells": [cell(i, k, s) for i, (k, s) in enumerate(cells)],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


SETUP = """
import matplotlib.pyplot as plt
import torch

torch.set_num_threads(1)  # one small image: a second thread only adds overhead
plt.rcParams["figure.dpi"] = 80
"""

WHY_UPDATES_LEAK = [
    ("md", """
# Why an update leaks: DLG and iDLG, step by step

A federated client never sends its data, only the gradient of its loss on that data. This
notebook shows, on one face from the embedded `faces` data, how an honest-but-curious server turns
that gradient back into the face: first the label (iDLG's rule), then the picture (DLG's gradient
matching), watching the guess and the matching loss as the search runs. Everything is offline;
it takes well under a minute on a laptop.
"""),
    ("code", SETUP),
    ("md", """
## 1. One round of federated learning

Client 0 holds one 32×32 face and computes a FedSGD gradient on LeNet-Zhu, the network of the
DLG paper. `build_round` returns what the server sees (`view`) and, kept apart, the truth.
"""),
    ("code", """
from gradleak.defenses import build_stack
from gradleak.scenario import Scenario, build_round

round_ = build_round(Scenario(dataset="faces", index=0), build_stack([]))
view, truth = round_.view, round_.truth
print("the server holds:", [tuple(g.shape) for g in view.update])
print("the client's label:", int(truth.labels[0]))
plt.imshow(truth.images[0, 0], cmap="gray", vmin=0, vmax=1); plt.title("the client's face"); plt.axis("off");
"""),
    ("md", """
## 2. The label falls out of the last layer (iDLG)

With cross-entropy, the gradient of the loss with respect to the logits is `softmax(z) − onehot(y)`:
negative only for the true class. The last layer's input is non-negative (sigmoid outputs), so
the row of the last weight gradient that belongs to the true class is the only one whose sum is
negative (Zhao, Mopuri, Bilen, "iDLG", 2020).
"""),
    ("code", """
from gradleak.attacks.labels import idlg_labels

last_weight_gradient = view.update[-2]  # (classes, features)
row_sums = last_weight_gradient.sum(dim=1)
print("row sums:", [f"{v:+.4f}" for v in row_sums.tolist()])
print("iDLG reads label", int(idlg_labels(view)[0]), "- the truth is", int(truth.labels[0]))
"""),
    ("md", """
## 3. The picture: gradient matching (DLG)

DLG (Zhu, Liu, Han, NeurIPS 2019, eq. 4) starts from random noise `x'` and moves it so that the
gradient it would produce matches the observed one:

    minimise over x'   || ∇W L(model(x'), y) − observed gradient ||²

Here is that loss for a random guess, computed by hand with the same functions the attack uses:
"""),
    ("code", """
from gradleak.federated import batch_gradient

params = dict(view.model.named_parameters())
guess = torch.randn_like(truth.images)  # in the model's normalised space
label = idlg_labels(view)
guess_gradient = batch_gradient(view.model, params, guess, label)
loss = sum(((g - o) ** 2).sum() for g, o in zip(guess_gradient, view.update))
print(f"gradient-matching loss of a random guess: {float(loss):.3g}")
"""),
    ("md", """
Now the attack itself, watching every check (every 10 gradient evaluations) through `on_check`.
DLG also optimises a soft label jointly with the image; iDLG fixes the label first.
"""),
    ("code", """
from gradleak.attacks import build_attack
from gradleak.eval.metrics import score

def watch(spec):
    frames = []
    attack = build_attack(spec)
    reconstruction = attack.reconstruct(view, on_check=lambda n, images: frames.append(
        (n, view.normalization.denormalize(images.float()).clone())))
    return reconstruction, frames

runs = {name: watch(f"{name}:restarts=1,iterations=1500") for name in ("dlg", "idlg")}
for name, (reconstruction, frames) in runs.items():
    s = score(reconstruction, truth)
    print(f"{name}: {reconstruction.info['evaluations']} gradient evaluations, PSNR {s.mean_psnr:.1f} dB, "
          f"label {'right' if s.label_accuracy == 1 else 'wrong'}")
"""),
    ("code", """
figure, axes = plt.subplots(1, 2, figsize=(9, 3))
for name, (reconstruction, _) in runs.items():
    history = reconstruction.history
    axes[0].semilogy([h["iteration"] for h in history], [h["loss"] for h in history], label=name)
axes[0].set_xlabel("gradient evaluations"); axes[0].set_ylabel("gradient-matching loss"); axes[0].legend()
from gradleak.eval.metrics import psnr
for name, (_, frames) in runs.items():
    axes[1].plot([n for n, _ in frames], [min(psnr(im[0], truth.images[0]), 80) for _, im in frames], label=name)
axes[1].axhline(20, color="k", linestyle=":", label="recognisable (20 dB)")
axes[1].set_xlabel("gradient evaluations"); axes[1].set_ylabel("PSNR (dB)"); axes[1].legend()
figure.tight_layout()
"""),
    ("md", "## 4. The picture evolving (iDLG)"),
    ("code", """
_, frames = runs["idlg"]
picks = [frames[round(i * (len(frames) - 1) / 5)] for i in range(6)]
figure, axes = plt.subplots(1, 7, figsize=(12, 2))
for axis, (n, images) in zip(axes, picks):
    axis.imshow(images[0, 0], cmap="gray", vmin=0, vmax=1); axis.set_title(f"{n} evals"); axis.axis("off")
axes[-1].imshow(truth.images[0, 0], cmap="gray", vmin=0, vmax=1); axes[-1].set_title("truth"); axes[-1].axis("off");
"""),
    ("md", """
The loss falls by many orders of magnitude and the face appears: above 40 dB the copy differs
from the original by less than 1% of the pixel range. Nothing in the update was "the image",
yet the update determined it. Next: `defenses_and_costs.ipynb`.
"""),
]

DEFENSES_AND_COSTS = [
    ("md", """
# Defenses and what they cost

Three defenses against the attack of `why_updates_leak.ipynb`, each with its price:

- **differential privacy**: a guarantee ε, paid in accuracy;
- **secure aggregation**: the server sees only a sum, paid in bytes;
- **pruning**: a heuristic with no guarantee, paid in accuracy.

Budgets are kept short so that it all runs in a couple of minutes on 2 cores.
"""),
    ("code", SETUP),
    ("code", """
from gradleak.attacks import build_attack
from gradleak.defenses import build_stack
from gradleak.eval.metrics import score
from gradleak.scenario import Scenario, build_round

ATTACK = "idlg:iterations=800,restarts=1"  # breaks the undefended face in ~600 evaluations

def attack_psnr(defenses, cohort_size=1):
    stack = build_stack(list(defenses))
    round_ = build_round(Scenario(dataset="faces", index=0, cohort_size=cohort_size), stack, noise_seed=0)
    reconstruction = build_attack(ATTACK).reconstruct(round_.view)
    return score(reconstruction, round_.truth).mean_psnr, round_, stack

rows = []
psnr, _, _ = attack_psnr([])
rows.append(("none", f"{psnr:.1f}", "–", "the client's exact gradient"))
print(rows[-1])
"""),
    ("md", """
## 1. Differential privacy: ε against accuracy

`dp-sgd:epsilon=E` clips each example's gradient and adds Gaussian noise on the client, so the
server's view itself is private (Abadi et al., CCS 2016). The accountant turns the noise into ε.
"""),
    ("code", """
for eps in (8, 1):
    psnr, _, stack = attack_psnr([f"dp-sgd:epsilon={eps}"])
    dp = next(iter(stack))
    rows.append((f"dp-sgd:epsilon={eps}", f"{psnr:.1f}", f"ε = {dp.epsilon():.2g}, σ = {dp.sigma:.2f}",
                 "a clipped, noised gradient"))
    print(rows[-1])
"""),
    ("md", """
What does ε cost in accuracy? Train a model with FedAvg on `digits` under client-level DP
(DP-FedAvg, McMahan et al., ICLR 2018). Its noise on the average of `K` clients' updates is
`σC/K`: the same ε costs far less when more clients share each round.
"""),
    ("code", """
from gradleak.eval.utility import UtilityConfig, plan_utility, train_federated

accuracy = {}
for config in (UtilityConfig(clients=100, cohort=10, rounds=20, local_steps=1),
               UtilityConfig(clients=1000, cohort=100, rounds=20, local_steps=1)):
    for run in plan_utility(config, [("none",), ("dp-fedavg:epsilon=8",)], [0]):
        record = train_federated(run)
        accuracy[(config.cohort, run.defenses[0])] = record["accuracy"]
        print(f"{config.cohort:>3} of {config.clients} clients per round, {run.defenses[0]:<20} "
              f"test accuracy {100 * record['accuracy']:.1f}%")
for cohort in (10, 100):
    cost = 100 * (accuracy[(cohort, "none")] - accuracy[(cohort, "dp-fedavg:epsilon=8")])
    print(f"ε = 8 costs {cost:.1f} points with {cohort} clients per round")
"""),
    ("md", """
## 2. Secure aggregation: the server sees only the sum

With `secagg` (Bonawitz et al., CCS 2017) each pair of clients masks its upload with a shared
random vector that cancels in the sum. The attack now faces the average of four faces.
"""),
    ("code", """
psnr, round_, _ = attack_psnr(["secagg"], cohort_size=4)
cost = round_.cost
rows.append(("secagg, 4 clients", f"{psnr:.1f}", f"{cost['expansion']:.2f}× the plain upload's bytes",
             "only the sum of four gradients"))
print(rows[-1])
"""),
    ("code", """
from gradleak.eval.secagg_costs import CostPoint, measure

dim = sum(g.numel() for g in round_.view.update)
print(f"{'clients':>8} {'bytes sent + received per client':>34} {'× plain float32':>16}")
for clients in (4, 16, 64):
    record = measure(CostPoint(clients=clients, dim=dim))
    total = record["client_bytes_sent"] + record["client_bytes_received"]
    print(f"{clients:>8} {total:>34,.0f} {record['expansion']:>15.2f}×")
"""),
    ("md", """
## 3. Pruning: a heuristic

`prune:ratio=0.9` zeroes the 90% smallest entries of each update tensor before upload. It stops
this attack, but it gives no guarantee, and a smaller ratio may not.
"""),
    ("code", """
for ratio in (0.5, 0.9):
    psnr, _, _ = attack_psnr([f"prune:ratio={ratio}"])
    rows.append((f"prune:ratio={ratio}", f"{psnr:.1f}", "no guarantee", f"the {100 * (1 - ratio):.0f}% largest entries"))
    print(rows[-1])
"""),
    ("code", """
record = train_federated(plan_utility(UtilityConfig(clients=100, cohort=10, rounds=20, local_steps=1),
                                      [("prune:ratio=0.9",)], [0])[0])
print(f"FedAvg with 10 of 100 clients per round, pruned at 0.9: test accuracy {100 * record['accuracy']:.1f}% "
      f"(without defense {100 * accuracy[(10, 'none')]:.1f}%)")
"""),
    ("md", "## Side by side"),
    ("code", """
print(f"{'defense':<22} {'attack PSNR (dB)':>17}  {'guarantee / cost':<34} what the server saw")
for defense, psnr, cost, seen in rows:
    print(f"{defense:<22} {psnr:>17}  {cost:<34} {seen}")
"""),
    ("md", """
Below about 15 dB a reconstruction is noise. DP is the only defense here with a guarantee that
holds against any attack; its price is accuracy, and that price falls as the cohort grows.
Secure aggregation costs a few percent more bytes and protects individuals inside a cohort, not
what the cohort has in common.
"""),
]


def main() -> None:
    for name, cells in (("why_updates_leak", WHY_UPDATES_LEAK), ("defenses_and_costs", DEFENSES_AND_COSTS)):
        path = HERE / f"{name}.ipynb"
        path.write_text(json.dumps(notebook(cells), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(path)


if __name__ == "__main__":
    main()
