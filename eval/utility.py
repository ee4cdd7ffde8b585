"""The accuracy a defense costs: federated training under it, then test accuracy.

FedAvg (McMahan et al., AISTATS 2017) over a population of ``clients`` holding equal IID slices
of the training split: each round a cohort of ``cohort`` clients drawn uniformly at random runs
``local_steps`` SGD steps from the global weights and uploads its weight delta; the round's
released aggregate (after every defense stage: clipping, noise, secure aggregation) is added to
the global weights, scaled by ``server_lr``. After ``rounds`` rounds the global model is scored
on the held-out test split. Each round is one :func:`gradleak.federated.run_round`, the very
code the attacks are evaluated on, so what is measured here is the same mechanism.

DP defenses are told the training schedule they protect, unless their spec fixes it: a
mechanism at the ``step`` stage (DP-SGD, example-level) releases once per local step, so
``steps = rounds × local_steps``, and its ``sample_rate`` stays the lot sampling rate of the
spec; a client-level mechanism (DP-FedAvg, distributed DP) releases once per round, with
``steps = rounds`` and ``sample_rate = cohort / clients``. The cohort is then a Poisson sample
at that rate (each client in independently; ``cohort`` is its expected size), as the accountant
assumes; a round whose sample is too small to aggregate (empty, or one client under secure
aggregation) is skipped. Distributed DP needs a fixed cohort whose noise shares add up, so a
stack with it draws ``cohort`` clients uniformly and is accounted without sampling (q = 1).
Counting every round for DP-SGD ignores that a client sits most rounds out, so its ε is an
upper bound.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Annotated, Any

import torch

import gradleak
from gradleak.data import load_dataset
from gradleak.defenses import DEFENSES, build_stack
from gradleak.device import resolve_device
from gradleak.errors import GradleakError
from gradleak.eval.sweep.plan import Component, build_components, is_no_defense, stack_label
from gradleak.eval.store import run_key
from gradleak.federated import Client, poisson_cohort, run_round
from gradleak.models import build
from gradleak.progress import progress
from gradleak.scenario import MAX_BATCH
from gradleak.spec import MAX_CLIENTS, Range, Seed, Spec, config_fields, parse_spec
from gradleak.threat import LocalTraining
from gradleak.training import accuracy

UTILITY_RESULTS = "utility.jsonl"


@dataclass(frozen=True)
class UtilityConfig:
    dataset: str = "digits"
    model: str = "mlp:hidden=64"
    clients: Annotated[int, Range(1, MAX_CLIENTS)] = 100  # N, the population
    cohort: Annotated[int, Range(1, MAX_CLIENTS)] = 10  # K, clients per round
    rounds: Annotated[int, Range(1, 1_000_000)] = 50
    local_steps: Annotated[int, Range(1, 100_000)] = 5  # E; McMahan et al. 2017 run 1-20 local epochs
    local_batch_size: Annotated[int | None, Range(1, MAX_BATCH)] = None  # None: the client's whole slice each step
    learning_rate: Annotated[float, Range(0, None, low_open=True)] = 0.1  # client SGD step
    server_lr: Annotated[float, Range(0, None, low_open=True)] = 1.0  # 1 is plain FedAvg
    test_fraction: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.25
    model_seed: Seed = 0

    def __post_init__(self) -> None:
        if not 1 <= self.cohort <= self.clients:
            raise GradleakError(f"cohort must be between 1 and clients={self.clients}, not {self.cohort}")
        if self.rounds < 1 or self.local_steps < 1:
            raise GradleakError("rounds and local_steps must be at least 1")
        if not 0 < self.test_fraction < 1:
            raise GradleakError(f"test_fraction must be in (0, 1), not {self.test_fraction}")

    @property
    def sample_rate(self) -> float:
        return self.cohort / self.clients

    @property
    def setting(self) -> str:
        return f"{self.dataset}/{self.model}/{self.cohort} of {self.clients} clients"


@dataclass(frozen=True)
class UtilityRun:
    """One training: a config, a defense stack (as given and as scheduled), a seed. Picklable."""

    key: str
    config: UtilityConfig
    defenses: tuple[str, ...]  # as the user wrote them
    scheduled: tuple[str, ...]  # with the training schedule filled in
    seed: int
    device: str = "auto"
    private_noise: bool = False  # True: DP noise from the OS CSPRNG instead of the seed
    plugins: tuple[str, ...] = ()
    stack: tuple[Component, ...] = ()  # the scheduled defenses, parsed once by plan_utility

    @property
    def title(self) -> str:
        return f"{self.config.setting}, {stack_label(self.defenses)}, seed {self.seed}"


def schedule(spec: str, config: UtilityConfig) -> str:
    """``spec`` with the DP schedule keys (``steps``, ``sample_rate``, ``clients``) it leaves open filled in."""
    if is_no_defense(spec):
        return spec
    parsed = parse_spec(spec)
    cls = DEFENSES.get(parsed.name)
    fields = config_fields(cls.Config)
    params = dict(parsed.params)
    per_step = cls.stage == "step"  # releases once per local step, not once per round
    if "steps" in fields and "steps" not in params:
        params["steps"] = config.rounds * config.local_steps if per_step else config.rounds
    fixed_cohort = getattr(cls, "fixed_cohort", False)
    if "sample_rate" in fields and "sample_rate" not in params and not per_step and not fixed_cohort:
        params["sample_rate"] = config.sample_rate
    if "clients" in fields and "clients" not in params:
        params["clients"] = config.cohort
    return str(Spec(parsed.name, params))


def plan_utility(
    config: UtilityConfig,
    stacks: list[tuple[str, ...]],
    seeds: list[int],
    device: str = "auto",
    private_noise: bool = False,
) -> list[UtilityRun]:
    """Check every stack against the schedule (calibrating σ for each ε) and list the trainings."""
    load_dataset(config.dataset)  # unknown names fail here, before training
    runs = []
    for specs in stacks:
        scheduled = tuple(schedule(s, config) for s in specs)
        try:
            stack = build_stack(scheduled)
        except GradleakError as exc:
            raise GradleakError(f"defenses {stack_label(specs)!r}: {exc}") from None
        if stack.at("aggregation") and config.cohort < 2:
            raise GradleakError(f"defenses {stack_label(specs)!r}: secure aggregation needs a cohort of 2 or more")
        for seed in seeds:
            identity = {
                "config": dataclasses.asdict(config),
                "defenses": [{"name": d.name, "config": dataclasses.asdict(d.config)} for d in stack],
                "seed": seed,
                "private_noise": private_noise,
            }
            runs.append(UtilityRun(run_key(identity), config, specs, scheduled, seed, device, private_noise,
                                   stack=tuple(Component.of(d) for d in stack)))
    return runs


def split(num_examples: int, config: UtilityConfig, seed: int) -> tuple[list[int], list[list[int]]]:
    """A seeded shuffle: the test indices, then ``clients`` equal slices of the rest."""
    order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed)).tolist()
    test_size = int(round(config.test_fraction * num_examples))
    test, train = order[:test_size], order[test_size:]
    per_client = len(train) // config.clients
    if per_client < 1:
        raise GradleakError(f"{len(train)} training examples cannot give {config.clients} clients one each")
    return test, [train[k * per_client : (k + 1) * per_client] for k in range(config.clients)]


def train_federated(run: UtilityRun) -> dict[str, Any]:
    """Train with FedAvg under the run's defenses; returns the utility record."""
    config = run.config
    device = resolve_device(run.device)
    dataset = load_dataset(config.dataset)
    stack = build_components(run.stack)
    test, slices = split(len(dataset), config, run.seed)
    clients = [Client(k, *dataset.get(indices)) for k, indices in enumerate(slices)]
    model = build(config.model, dataset.shape, dataset.num_classes, seed=config.model_seed + run.seed).to(device)
    local = LocalTraining("fedavg", config.local_steps, config.learning_rate, config.local_batch_size)
    sampler = torch.Generator().manual_seed(run.seed)
    fixed_cohort = any(getattr(d, "fixed_cohort", False) for d in stack)
    smallest = 2 if stack.at("aggregation") else 1
    start = time.perf_counter()
    history = []
    for round_index in progress(range(config.rounds), desc=f"FedAvg {stack_label(run.defenses)}"):
        if fixed_cohort:
            cohort = torch.randperm(config.clients, generator=sampler)[: config.cohort].tolist()
        else:
            cohort = poisson_cohort(config.clients, config.sample_rate, sampler)
        noise_seed = None if run.private_noise else run.seed * 1_000_003 + round_index
        if len(cohort) >= smallest:  # else too few clients to aggregate: the round changes nothing
            outcome = run_round(model, dataset.normalization, [clients[k] for k in cohort], dataset.num_classes,
                                local=local, defenses=stack, noise_seed=noise_seed)
            with torch.no_grad():
                for parameter, delta in zip([p for p in model.parameters() if p.requires_grad], outcome.released):
                    parameter.add_(delta.to(parameter.device), alpha=config.server_lr)
        if (round_index + 1) % max(1, config.rounds // 10) == 0 or round_index + 1 == config.rounds:
            history.append({"round": round_index + 1, "accuracy": accuracy(model, dataset, test)})
    dp = next((d for d in stack if d.epsilon() is not None), None)  # the DP mechanism, if any
    return {
        "key": run.key,
        "kind": "utility",
        "config": {**dataclasses.asdict(config), "defenses": list(run.scheduled), "seed": run.seed},
        "label": {
            "setting": config.setting,
            "defense": stack_label(run.defenses),
            "mechanism": dp.name if dp else None,
        },
        "seed": run.seed,
        "accuracy": history[-1]["accuracy"],
        "history": history,
        "epsilon": dp.epsilon() if dp else None,
        "delta": getattr(dp.config, "delta", None) if dp else None,
        "noise_multiplier": getattr(dp, "sigma", None) if dp else None,
        "noise_seeded": dp is not None and not run.private_noise,
        "seconds": time.perf_counter() - start,
        "device": str(device),
        "gradleak": gradleak.__version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
