"""``gradleak demo``: the whole story on embedded data, in a few minutes on a laptop.

1. **Leak.** A cohort of 8 clients each computes a FedSGD gradient of one image on LeNet-Zhu
   (the DLG setting). The honest-but-curious server runs DLG and iDLG on client 0's upload.
2. **Defend.** The same round under gradient pruning, DP-SGD at ε = 8, 3, 1 (noise added on the
   client, so the server's view is noised), and secure aggregation, where the server only sees
   the cohort's aggregate and the attack must untangle eight images at once.
3. **Cost.** Secure aggregation's bytes and seconds as the cohort grows (the real protocol),
   and the test accuracy federated training keeps under the same DP (on ``digits``).

Each part goes through the same machinery as ``gradleak evaluate`` / ``utility`` / ``report``
(results land in ``OUT/results.jsonl``, ``secagg.jsonl``, ``utility.jsonl``, so a second
``gradleak demo`` reuses them). Attacks or defenses that are not installed are left out and
named, never imitated.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from gradleak.attacks import ATTACKS
from gradleak.defenses import DEFENSES
from gradleak.errors import GradleakError
from gradleak.eval.costs import SECAGG_RESULTS, CostPoint, measure
from gradleak.eval.grid import Run, parse_config, plan
from gradleak.eval.harness import RESULTS, run_grid
from gradleak.eval.report import load_results, write_report
from gradleak.eval.runner import run_tasks
from gradleak.eval.summary import group_runs, table_rows, text_table
from gradleak.eval.utility import UTILITY_RESULTS, UtilityConfig, plan_utility, train_federated
from gradleak.models import build
from gradleak.scenario import scenario_dataset
from gradleak.spec import parse_spec


@dataclass(frozen=True)
class DemoPlan:
    attacks: tuple[str, ...]
    defenses: tuple[str, ...]
    datasets: tuple[str, ...]
    cohort: int = 8
    cost_clients: tuple[int, ...] = ()
    utility: UtilityConfig | None = None
    utility_defenses: tuple[str, ...] = ()


DP_LEVELS = ("dp-sgd:epsilon=8", "dp-sgd:epsilon=3", "dp-sgd:epsilon=1")

FULL = DemoPlan(
    attacks=("dlg", "idlg"),
    defenses=("none", "prune:ratio=0.9", *DP_LEVELS, "secagg"),
    datasets=("faces", "photos"),
    cost_clients=(4, 8, 16, 32, 64),
    utility=UtilityConfig(dataset="digits", clients=100, cohort=10, rounds=15),
    utility_defenses=("none", *DP_LEVELS),
)

QUICK = DemoPlan(
    attacks=("idlg",),
    defenses=("none", "dp-sgd:epsilon=1", "secagg"),
    datasets=("faces",),
    cost_clients=(4, 8),
)


@dataclass
class DemoOutcome:
    table: str
    report: Path
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _available(plan_: DemoPlan) -> tuple[DemoPlan, list[str]]:
    """The plan restricted to what is registered in this install, with a note for what is not."""
    attacks = tuple(a for a in plan_.attacks if parse_spec(a).name in ATTACKS)
    defenses = tuple(d for d in plan_.defenses if parse_spec(d).name == "none" or parse_spec(d).name in DEFENSES)
    missing = [x for x in (*plan_.attacks, *plan_.defenses) if x not in (*attacks, *defenses)]
    notes = [f"not installed, left out: {', '.join(missing)}"] if missing else []
    if not attacks:
        raise GradleakError(
            f"the demo needs at least one of the attacks {', '.join(plan_.attacks)}, but this install registers "
            f"{', '.join(ATTACKS.names()) or 'none'}"
        )
    utility = plan_.utility
    utility_defenses = tuple(d for d in plan_.utility_defenses if d in defenses)
    if utility is not None and not any(parse_spec(d).name != "none" for d in utility_defenses):
        utility = None
    cost_clients = plan_.cost_clients if "secagg" in DEFENSES else ()
    return dataclasses.replace(plan_, attacks=attacks, defenses=defenses, utility=utility,
                               utility_defenses=utility_defenses, cost_clients=cost_clients), notes


def run_demo(plan_: DemoPlan, out: str | Path, workers: int = 2, device: str = "auto") -> DemoOutcome:
    """Run the demo's three parts into ``out`` and write ``out/report``; returns the summary table."""
    start = time.perf_counter()
    out = Path(out)
    plan_, notes = _available(plan_)
    runs = plan(parse_config({
        "out": str(out),
        "device": device,
        "attacks": list(plan_.attacks),
        "defenses": list(plan_.defenses),
        "scenario": [{"name": name, "dataset": name, "cohort_size": plan_.cohort} for name in plan_.datasets],
    }, "the demo"))
    files = [out / RESULTS]
    utility_runs = []
    if plan_.utility is not None:
        utility_runs = plan_utility(plan_.utility, [(d,) for d in plan_.utility_defenses], [0], device)
    print(f"attacking: {', '.join(plan_.attacks)} on {', '.join(plan_.datasets)} (LeNet-Zhu, one image per client, "
          f"{plan_.cohort} clients) under {', '.join(plan_.defenses)}: {len(runs)} runs")
    outcome = run_grid(runs, out, workers)
    notes += [f"{task.title}: {error}" for task, error in outcome.failures]

    if plan_.cost_clients:
        dim = _update_size(runs)
        points = [CostPoint(clients=n, dim=dim) for n in plan_.cost_clients]
        points += [CostPoint(clients=n, dim=dim, dropout=0.25) for n in plan_.cost_clients if n >= 8]
        print(f"secure aggregation cost: {len(points)} protocol runs, {dim:,} parameters, {min(plan_.cost_clients)}"
              f"-{max(plan_.cost_clients)} clients")
        run_tasks(points, out / SECAGG_RESULTS, measure, 1)
        files.append(out / SECAGG_RESULTS)
    if utility_runs:
        print(f"utility: FedAvg on {plan_.utility.dataset} under {', '.join(plan_.utility_defenses)}")
        run_tasks(utility_runs, out / UTILITY_RESULTS, train_federated, workers)
        files.append(out / UTILITY_RESULTS)

    keys = {r.key for r in runs}
    records = [r for r in load_results(files) if r["kind"] != "attack" or r["key"] in keys]
    _, html = write_report(records, out / "report", title="gradleak demo")
    table = text_table(table_rows(group_runs(records)))
    return DemoOutcome(table=table, report=html, notes=notes, seconds=time.perf_counter() - start)


def _update_size(runs: list[Run]) -> int:
    """The largest number of parameters a client of the demo uploads (what secure aggregation sums)."""
    sizes = []
    for scenario in {r.scenario.dataset: r.scenario for r in runs}.values():
        dataset = scenario_dataset(scenario)
        model = build(scenario.model, dataset.shape, dataset.num_classes, seed=0)
        sizes.append(sum(p.numel() for p in model.parameters() if p.requires_grad))
    return max(sizes)
