"""``gradleak demo``: the whole story on embedded data, in a few minutes on a laptop.

1. **Leak.** A cohort of 8 clients each computes a FedSGD gradient of one image on LeNet-Zhu
   (the DLG setting). The honest-but-curious server runs iDLG on client 0's upload, and DLG
   too, to compare DLG's jointly optimised label with iDLG's analytic one.
2. **Defend.** iDLG against the same round under gradient pruning, DP-SGD at ε = 8, 3, 1 (noise
   added on the client, so the server's view is noised), and secure aggregation, where the
   server only sees the cohort's aggregate and the attack must untangle eight images at once.
   The attack gets the same evaluation budget against every defense, one that is ample against
   the undefended upload.
   Then a malicious server (model inconsistency, Pasquini et al. CCS 2022) breaks secure
   aggregation of the same 8 clients when the protocol does not bind the model
   (``secagg:bind_model=false``), and is stopped when it does (``secagg``, the default).
3. **Cost.** Secure aggregation's bytes and seconds as the cohort grows (the real protocol),
   and the test accuracy federated training keeps under client-level DP (DP-FedAvg, McMahan et
   al., ICLR 2018) on ``digits``, at two cohort sizes. The noise on the averaged update is
   ``σC/K`` for a cohort of ``K`` (McMahan et al. 2018, Algorithm 1), so the accuracy a given ε
   costs falls as the cohort grows: the table shows that trade-off where it is realistic,
   rather than at one small cohort where any ε destroys the model.

Each part goes through the same machinery as ``gradleak evaluate`` / ``utility`` / ``report``
(every result lands in ``OUT/results.jsonl``, so a second ``gradleak demo`` reuses them). Attacks or defenses that are not installed are left out and
named, never imitated.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from gradleak.attacks import ATTACKS
from gradleak.defenses import DEFENSES
from gradleak.errors import GradleakError
from gradleak.eval.secagg_costs import CostPoint, measure
from gradleak.eval.sweep.plan import Run, is_no_defense, parse_config, plan
from gradleak.eval.sweep.execute import RESULTS, execute
from gradleak.eval.records import AttackRecord, UtilityRecord, load_records, of_kind
from gradleak.eval.report import write_report
from gradleak.eval.sweep.tasks import run_tasks
from gradleak.eval.summary import group_runs, table_rows, text_table
from gradleak.eval.utility import UtilityConfig, UtilityRun, plan_utility, train_federated
from gradleak.models import build
from gradleak.scenario import scenario_dataset
from gradleak.spec import Spec, config_fields, parse_spec


@dataclass(frozen=True)
class DemoData:
    dataset: str
    evaluations: int  # the attack's budget per start: ample against the undefended upload
    baseline: bool = False  # also run the baseline attacks there, without defense


@dataclass(frozen=True)
class DemoPlan:
    attacks: tuple[str, ...]  # attack names, run against every defense with the same budget
    defenses: tuple[str, ...]
    datasets: tuple[DemoData, ...]
    starts: int | None = 2  # a fresh start when one stalls, this many in all; None: the attack's default
    # Under secure aggregation the attack inverts the cohort's aggregate, 8 images per
    # evaluation (2-3x the cost of one, measured); it gets this many evaluations in one start.
    aggregate_evaluations: int = 300
    baseline_attacks: tuple[str, ...] = ()  # without defense, with their default starts (DLG's joint label)
    cohort: int = 8
    cost_clients: tuple[int, ...] = ()
    utility: tuple[UtilityConfig, ...] = ()  # one FedAvg training per cohort size and utility defense
    utility_defenses: tuple[str, ...] = ()
    malicious: str | None = None  # a server spec attacked through secure aggregation, unbound then bound
    malicious_defenses: tuple[str, ...] = ("secagg:bind_model=false", "secagg")


MALICIOUS = "inconsistent:target=0"
DP_LEVELS = ("dp-sgd:epsilon=8", "dp-sgd:epsilon=3", "dp-sgd:epsilon=1")
# Client-level DP over the whole training: DP-SGD's per-upload noise would be averaged over one
# client's 1-13 examples only, where every ε destroys the model (19% accuracy at ε = 8, measured).
CLIENT_DP_LEVELS = ("dp-fedavg:epsilon=8", "dp-fedavg:epsilon=3", "dp-fedavg:epsilon=1")

# Measured here: iDLG rebuilds face 0 in about 1,000 evaluations (second start) and photo 0 in
# about 2,400 (first start); DLG's joint label needs up to four starts on the face.
FULL = DemoPlan(
    attacks=("idlg",),
    baseline_attacks=("dlg",),
    defenses=("none", "prune:ratio=0.9", *DP_LEVELS, "secagg"),
    datasets=(DemoData("faces", 1000, baseline=True), DemoData("photos", 3000)),
    cost_clients=(4, 8, 16, 32, 64),
    # The same schedule (20 rounds, one local step) at two cohort sizes; measured on 2 cores, the
    # larger one loses 1.6 points at ε = 8 where the smaller loses 32 (seed 0).
    utility=(UtilityConfig(clients=100, cohort=10, rounds=20, local_steps=1),
             UtilityConfig(clients=1_000, cohort=100, rounds=20, local_steps=1)),
    utility_defenses=("none", *CLIENT_DP_LEVELS),
    malicious=MALICIOUS,
)

QUICK = DemoPlan(
    attacks=("idlg",),
    defenses=("none", "dp-sgd:epsilon=1", "secagg"),
    datasets=(DemoData("faces", 1000),),
    aggregate_evaluations=200,
    cost_clients=(4, 8),
    # the full demo's cohorts in half the rounds: ε = 8 still costs ~50 points at 10 and ~0 at 100
    utility=(UtilityConfig(clients=100, cohort=10, rounds=10, local_steps=1),
             UtilityConfig(clients=1_000, cohort=100, rounds=10, local_steps=1)),
    utility_defenses=("none", "dp-fedavg:epsilon=8"),
    malicious=MALICIOUS,
)


@dataclass
class DemoOutcome:
    table: str
    report: Path
    utility: str = ""  # the privacy-against-utility table, one row per cohort size and defense
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _available(plan_: DemoPlan) -> tuple[DemoPlan, list[str]]:
    """The plan restricted to what is registered in this install, with a note for what is not."""
    attacks = tuple(a for a in plan_.attacks if a in ATTACKS)
    baseline = tuple(a for a in plan_.baseline_attacks if a in ATTACKS)
    defenses = tuple(d for d in plan_.defenses if is_no_defense(d) or parse_spec(d).name in DEFENSES)
    wanted = (*plan_.attacks, *plan_.baseline_attacks, *plan_.defenses)
    missing = [x for x in wanted if x not in (*attacks, *baseline, *defenses)]
    notes = [f"not installed, left out: {', '.join(missing)}"] if missing else []
    if not attacks:
        raise GradleakError(
            f"the demo needs the attack {' or '.join(plan_.attacks)}, but this install registers "
            f"{', '.join(ATTACKS.names()) or 'no attack'}"
        )
    utility_defenses = tuple(d for d in plan_.utility_defenses if is_no_defense(d) or parse_spec(d).name in DEFENSES)
    missing_dp = [d for d in plan_.utility_defenses if d not in utility_defenses]
    notes += [f"not installed, left out of the utility table: {', '.join(missing_dp)}"] if missing_dp else []
    utility = plan_.utility if not all(map(is_no_defense, utility_defenses)) else ()
    cost_clients = plan_.cost_clients if "secagg" in DEFENSES else ()
    return dataclasses.replace(plan_, attacks=attacks, baseline_attacks=baseline, defenses=defenses, utility=utility,
                               utility_defenses=utility_defenses, cost_clients=cost_clients), notes


def attack_spec(name: str, evaluations: int, starts: int | None) -> str:
    """``name`` with an evaluation budget per start and a number of starts, where its config has them."""
    fields = config_fields(ATTACKS.get(name).Config)
    params = {"iterations": evaluations, "restarts": starts}
    return str(Spec(name, {k: v for k, v in params.items() if k in fields and v is not None}))


def demo_runs(plan_: DemoPlan, out: Path, device: str) -> list[Run]:
    """The attack grid, labelled by attack name (the budgets are in the notes)."""
    aggregators = [d for d in plan_.defenses if not is_no_defense(d) and DEFENSES.get(parse_spec(d).name).stage == "aggregation"]
    tables = []
    for data in plan_.datasets:
        scenario = {"name": data.dataset, "dataset": data.dataset, "cohort_size": plan_.cohort}
        per_client = [d for d in plan_.defenses if d not in aggregators]
        tables.append({**scenario, "defenses": per_client,
                       "attacks": [attack_spec(a, data.evaluations, plan_.starts) for a in plan_.attacks]})
        if aggregators:
            tables.append({**scenario, "defenses": aggregators,
                           "attacks": [attack_spec(a, plan_.aggregate_evaluations, 1) for a in plan_.attacks]})
        if plan_.malicious and aggregators:  # the target's own update once the server isolates it
            tables.append({**scenario, "servers": [plan_.malicious], "defenses": list(plan_.malicious_defenses),
                           "attacks": [attack_spec(a, data.evaluations, plan_.starts) for a in plan_.attacks]})
        if data.baseline and plan_.baseline_attacks:
            tables.append({**scenario, "defenses": ["none"],
                           "attacks": [attack_spec(a, data.evaluations, None) for a in plan_.baseline_attacks]})
    runs = plan(parse_config({"out": str(out), "device": device, "scenario": tables}, "the demo"))
    return [dataclasses.replace(r, label={**r.label, "attack": r.attack.name}) for r in runs]


def run_demo(plan_: DemoPlan, out: str | Path, workers: int = 2, device: str = "auto") -> DemoOutcome:
    """Run the demo's three parts into ``out`` and write ``out/report``; returns the summary table.

    All of it is one pool of tasks (worker processes start once), the slowest first, recorded in
    one ``results.jsonl``.
    """
    start = time.perf_counter()
    out = Path(out)
    plan_, notes = _available(plan_)
    runs = demo_runs(plan_, out, device)
    budgets = ", ".join(f"{d.evaluations:,} on {d.dataset}" for d in plan_.datasets)
    starts = "the attack's default number of starts" if plan_.starts is None else f"up to {plan_.starts} starts"
    notes.append(f"attack budget: {budgets} gradient evaluations per start, {starts}, the same for every "
                 f"defense; against the aggregate of secure aggregation {plan_.aggregate_evaluations:,} "
                 f"evaluations of the {plan_.cohort}-image batch in one start")
    datasets = ", ".join(d.dataset for d in plan_.datasets)
    print(f"attacks: {', '.join(plan_.attacks)} on {datasets} (LeNet-Zhu, one image per client, "
          f"{plan_.cohort} clients) under {', '.join(plan_.defenses)}"
          + (f"; {', '.join(plan_.baseline_attacks)} without defense" if plan_.baseline_attacks else "")
          + (f"; a malicious server ({plan_.malicious}) under {' and '.join(plan_.malicious_defenses)}"
             if plan_.malicious else "")
          + f": {len(runs)} runs")
    points: list[CostPoint] = []
    if plan_.cost_clients:
        dim = _update_size(runs)
        points = [CostPoint(clients=n, dim=dim) for n in plan_.cost_clients]
        points += [CostPoint(clients=n, dim=dim, dropout=0.25) for n in plan_.cost_clients if n >= 8]
        print(f"secure aggregation cost: {len(points)} protocol runs, {dim:,} parameters, "
              f"{min(plan_.cost_clients)}-{max(plan_.cost_clients)} clients")
    trainings = utility_trainings(plan_, device)
    if trainings:
        cohorts = ", ".join(f"{c.cohort} of {c.clients:,}" for c in plan_.utility)
        print(f"utility: FedAvg on {plan_.utility[0].dataset} with {cohorts} clients per round under "
              f"{', '.join(plan_.utility_defenses)}")
    # successful attacks run longest (failing ones stall early), so they go first
    ordered = sorted(runs, key=lambda r: r.label["defense"] != "none")
    outcome = run_tasks([*ordered, *trainings, *points], out / RESULTS, run_task, workers)
    notes += [f"{task.title}: {error}" for task, error in outcome.failures]

    keys = {t.key for t in (*runs, *points, *trainings)}
    records = [r for r in load_records([out / RESULTS]) if r.key in keys]
    notes += [f"{r.scenario}, {r.defense}: stopped: {r.stopped}" for r in of_kind(records, AttackRecord) if r.stopped]
    _, html = write_report(records, out / "report", title="gradleak demo")
    table = text_table(table_rows(group_runs(records)))
    utility = of_kind(records, UtilityRecord)
    return DemoOutcome(table=table, report=html, notes=notes, seconds=time.perf_counter() - start,
                       utility=text_table(tradeoff_rows(utility), TRADEOFF_COLUMNS) if utility else "")


def utility_trainings(plan_: DemoPlan, device: str = "auto") -> list[UtilityRun]:
    """One FedAvg training per cohort size of the plan and utility defense (seed 0)."""
    return [run for config in plan_.utility
            for run in plan_utility(config, [(d,) for d in plan_.utility_defenses], [0], device)]


TRADEOFF_COLUMNS = ("clients per round", "defense", "ε", "test accuracy %", "cost (points)", "training")


def tradeoff_rows(records: Iterable[UtilityRecord | dict[str, Any]]) -> list[tuple[str, ...]]:
    """Privacy against utility: accuracy and its cost against no defense, the cohort beside each, smallest cohort first."""
    def order(record: UtilityRecord) -> tuple:
        return record.config["cohort"], record.config["clients"], -(record.epsilon or math.inf)

    records = of_kind(records, UtilityRecord)
    clean = {(r.config["cohort"], r.config["clients"]): r.accuracy for r in records if r.epsilon is None}
    rows = []
    for r in sorted(records, key=order):
        c = r.config
        base = clean.get((c["cohort"], c["clients"]))
        cost = "–" if r.epsilon is None or base is None else f"{100 * (base - r.accuracy):.1f}"
        rows.append((f"{c['cohort']} of {c['clients']:,}", r.defense,
                     "–" if r.epsilon is None else f"{r.epsilon:.3g}", f"{100 * r.accuracy:.1f}", cost,
                     f"{c['rounds']} rounds × {c['local_steps']} local step(s), {c['dataset']}"))
    return rows


def run_task(task: Run | CostPoint | UtilityRun) -> dict:
    """Execute one demo task of any kind (module-level, so worker processes can receive it)."""
    if isinstance(task, Run):
        return execute(task)
    if isinstance(task, CostPoint):
        return measure(task)
    return train_federated(task)


def _update_size(runs: list[Run]) -> int:
    """The largest number of parameters a client of the demo uploads (what secure aggregation sums)."""
    sizes = []
    for scenario in {r.scenario.dataset: r.scenario for r in runs}.values():
        dataset = scenario_dataset(scenario)
        model = build(scenario.model, dataset.shape, dataset.num_classes, seed=0)
        sizes.append(sum(p.numel() for p in model.parameters() if p.requires_grad))
    return max(sizes)
