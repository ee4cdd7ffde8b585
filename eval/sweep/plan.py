"""What a sweep runs: scenarios × attacks × defense stacks × seeds, read from TOML and flags.

A config file looks like this (every key optional except the scenarios' own choices)::

    out = "runs/faces"               # output folder: results.jsonl, images/
    seeds = [0, 1, 2]
    workers = 2
    attacks = ["dlg", "idlg"]
    defenses = ["none", "prune:ratio=0.9", "dp-sgd:epsilon=3", "secagg", "prune:ratio=0.5 + secagg"]
    servers = ["honest", "inconsistent:target=0"]   # what the server sends (default: honest only)

    [[scenario]]
    dataset = "faces"
    cohort_size = 8

    [[scenario]]
    name = "photo batch"
    dataset = "photos"
    batch_size = 4
    attacks = ["ig"]                 # a scenario may replace the sweep's attacks or defenses

A server entry is a server spec (``gradleak list`` names them); a malicious server's runs are
labelled by a scenario name that says so, so they sit beside the honest rows in tables and
reports. A defense entry is one stack: ``none``, one spec, or specs joined by ``+`` (or a TOML list).
Scenario keys are the fields of :class:`gradleak.scenario.Scenario`. Everything is checked
before anything runs (:func:`plan`): unknown keys, attacks, defenses and impossible
combinations fail with a message naming the entry and the valid choices.

The run seed makes a run reproducible: it offsets the scenario's ``model_seed`` (so seeds also
vary the weights the attack faces), seeds the attack's own randomness when its config has a
``seed``, and seeds DP noise (which a real deployment must not do; records say so).
"""

from __future__ import annotations

import dataclasses
import importlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable, Mapping

from gradleak.attacks import ATTACKS, Attack, build_attack
from gradleak.defenses import DEFENSES, DefenseStack, build_stack
from gradleak.errors import GradleakError
from gradleak.eval.store import run_key
from gradleak.eval.summary import SUCCESS_DB
from gradleak.models import build
from gradleak.scenario import Scenario, client_indices, scenario_dataset
from gradleak.servers import SERVERS, Server, build_server
from gradleak.spec import MAX_WORKERS, Range, Seed, config_fields, make_config, parse_spec

STACK_JOIN = "+"
NO_DEFENSE = "none"  # the spec naming no defense: alone, it is the undefended baseline of a grid


def is_no_defense(spec: str) -> bool:
    return parse_spec(spec).name == NO_DEFENSE


@dataclass(frozen=True)
class SweepSettings:
    """The sweep-wide keys of a config file (the top level, besides ``[[scenario]]``)."""

    out: str = "gradleak-out/evaluate"
    seeds: tuple[Seed, ...] = (0,)
    workers: Annotated[int, Range(1, MAX_WORKERS)] = 1
    device: str = "auto"
    threshold_db: Annotated[float, Range(0, 1000)] = SUCCESS_DB
    plugins: tuple[str, ...] = ()  # modules imported first (and in every worker): your own attacks


@dataclass(frozen=True)
class ScenarioEntry:
    """One ``[[scenario]]`` table: the scenario, its label, and the attacks/stacks it meets."""

    name: str
    scenario: Scenario
    attacks: tuple[str, ...]
    defenses: tuple[tuple[str, ...], ...]
    servers: tuple[str, ...] = ("honest",)


@dataclass(frozen=True)
class GridConfig:
    settings: SweepSettings
    scenarios: tuple[ScenarioEntry, ...]


@dataclass(frozen=True)
class Component:
    """A registered attack, defense or server by name with its typed config: what a worker builds
    from, so a spec string is parsed once, when the grid is planned."""

    name: str
    config: Any

    @classmethod
    def of(cls, built: Attack | Server | Any) -> "Component":
        return cls(built.name, built.config)


def build_components(defenses: Iterable[Component]) -> DefenseStack:
    """The stack of planned defense components (already in stage order)."""
    return DefenseStack(tuple(DEFENSES.get(d.name)(d.config) for d in defenses))


@dataclass(frozen=True)
class Run:
    """One cell of the grid, self-contained and picklable (it travels to a worker process)."""

    key: str
    config: dict[str, Any]  # what the key is computed from; stored in the record
    scenario: Scenario
    label: dict[str, str]  # scenario / attack / defense, as the report names them (the specs as written)
    attack: Component  # its seed already set from the run's where its config has one
    defenses: tuple[Component, ...]  # in stage order; empty: no defense
    seed: int
    device: str
    out: str
    plugins: tuple[str, ...] = ()
    server: Component = Component("honest", None)  # what each client receives; None: the paper defaults
    position: int = 0  # in the grid, for tables in grid order; not part of the run's identity

    def build_attack(self) -> Attack:
        return ATTACKS.get(self.attack.name)(self.attack.config)

    def build_stack(self) -> DefenseStack:
        return build_components(self.defenses)

    def build_server(self) -> Server:
        return SERVERS.get(self.server.name)(self.server.config)

    @property
    def title(self) -> str:
        return f"{self.label['scenario']}, {self.label['attack']}, {self.label['defense']}, seed {self.seed}"


DEFAULT_ATTACKS = ("dlg",)
SWEEP_LISTS = {"attacks", "defenses", "servers"}


def parse_stack(entry: Any, where: str) -> tuple[str, ...]:
    """``"prune:ratio=0.9 + secagg"`` or ``["prune:ratio=0.9", "secagg"]`` -> the spec tuple."""
    if isinstance(entry, str):
        specs = [s.strip() for s in entry.split(STACK_JOIN)]
    elif isinstance(entry, (list, tuple)) and all(isinstance(s, str) for s in entry):
        specs = [s.strip() for s in entry]
    else:
        raise GradleakError(f"{where}: a defense stack is a spec string or a list of specs, not {entry!r}")
    if not specs or any(not s for s in specs):
        raise GradleakError(f"{where}: empty defense spec in {entry!r}")
    specs = [s for s in specs if not is_no_defense(s)]
    return tuple(specs) or (NO_DEFENSE,)


def stack_label(specs: Iterable[str]) -> str:
    return f" {STACK_JOIN} ".join(specs)


def _string_list(value: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise GradleakError(f"{where}: {key} must be a non-empty list of specs, not {value!r}")
    return tuple(v.strip() for v in value)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                scenario_overrides: Mapping[str, Any] | None = None) -> GridConfig:
    """Read a TOML config (optional) and lay flags over it.

    ``overrides`` replace sweep-wide keys (``attacks``, ``defenses``, ``seeds`` ...);
    ``scenario_overrides`` set scenario fields in every scenario, or define the only one when
    the file has none.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise GradleakError(f"config file {path} does not exist")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise GradleakError(f"{path} is not valid TOML: {exc}") from None
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return parse_config(raw, str(path) if path else "the flags", scenario_overrides)


def parse_config(raw: Mapping[str, Any], where: str, scenario_overrides: Mapping[str, Any] | None = None) -> GridConfig:
    """A config from its TOML structure (a dict); ``where`` names its source in error messages."""
    raw = dict(raw)
    tables = raw.pop("scenario", None)
    if tables is None:
        tables = [{}]
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise GradleakError(f"{where}: write scenarios as [[scenario]] tables")
    attacks = _string_list(raw.pop("attacks", DEFAULT_ATTACKS), "attacks", where)
    defenses = _stacks(raw.pop("defenses", ["none"]), where)
    servers = _string_list(raw.pop("servers", ["honest"]), "servers", where)
    valid = sorted([*config_fields(SweepSettings), *SWEEP_LISTS, "scenario"])
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise GradleakError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
    settings = make_config(SweepSettings, raw, where)
    if settings.workers < 1:
        raise GradleakError(f"{where}: workers must be at least 1, not {settings.workers}")
    if not settings.seeds:
        raise GradleakError(f"{where}: seeds must name at least one seed")
    entries = []
    for number, table in enumerate(tables, start=1):
        table = {**table, **{k: v for k, v in (scenario_overrides or {}).items() if v is not None}}
        entries.append(_scenario_entry(table, f"{where}, scenario {number}", attacks, defenses, servers))
    return GridConfig(settings, tuple(entries))


def _stacks(value: Any, where: str) -> tuple[tuple[str, ...], ...]:
    return tuple(parse_stack(d, f"{where}, defenses") for d in (value if isinstance(value, list) else [value]))


def _scenario_entry(table: dict[str, Any], where: str, attacks: tuple[str, ...],
                    defenses: tuple[tuple[str, ...], ...], servers: tuple[str, ...] = ("honest",)) -> ScenarioEntry:
    table = dict(table)
    name = table.pop("name", None)
    if "attacks" in table:
        attacks = _string_list(table.pop("attacks"), "attacks", where)
    if "defenses" in table:
        defenses = _stacks(table.pop("defenses"), where)
    if "servers" in table:
        servers = _string_list(table.pop("servers"), "servers", where)
    valid = sorted([*config_fields(Scenario), "name", *SWEEP_LISTS])
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise GradleakError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
    scenario = make_config(Scenario, table, where)
    return ScenarioEntry(str(name) if name else scenario_label(scenario), scenario, attacks, defenses, servers)


def scenario_label(s: Scenario) -> str:
    """A short readable name: ``faces/lenet-zhu``, plus whatever differs from the defaults."""
    parts = ["images" if s.images else s.dataset, s.model]
    if s.batch_size != 1:
        parts.append(f"B={s.batch_size}")
    if s.cohort_size != 1:
        parts.append(f"{s.cohort_size} clients")
    if s.algorithm == "fedavg":
        parts.append(f"fedavg E={s.local_steps}")
    if s.trained_epochs:
        parts.append(f"trained {s.trained_epochs:g} ep")
    if s.index:
        parts.append(f"#{s.index}")
    return "/".join(parts)


def import_plugins(modules: Iterable[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise GradleakError(f"cannot import plugin {module!r}: {exc}") from None


def _config_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj.config) if dataclasses.is_dataclass(obj.config) else {}


def seeded_attack(spec: str, seed: int, where: str):
    parsed = parse_spec(spec)
    overrides = {}
    if "seed" in config_fields(ATTACKS.get(parsed.name).Config) and "seed" not in parsed.params:
        overrides["seed"] = seed
    try:
        return build_attack(spec, **overrides)
    except GradleakError as exc:
        raise GradleakError(f"{where}: {exc}") from None


def check_combination(scenario: Scenario, stack: DefenseStack, where: str) -> None:
    """Reject settings that cannot mean anything, before any compute."""
    if any(d.name != "plain" for d in stack.at("aggregation")) and scenario.cohort_size < 2:
        raise GradleakError(
            f"{where}: {stack.aggregator.name} aggregates a cohort, but cohort_size is {scenario.cohort_size}; "
            "over one client the aggregate is that client's upload — set cohort_size to 2 or more"
        )


def plan(config: GridConfig) -> list[Run]:
    """Validate the whole grid and expand it into runs; no training or attack happens here."""
    settings = config.settings
    import_plugins(settings.plugins)
    runs: list[Run] = []
    for entry in config.scenarios:
        where = f"scenario {entry.name!r}"
        scenario = entry.scenario
        scenario.local  # building LocalTraining checks the FL settings
        dataset = scenario_dataset(scenario)
        client_indices(scenario, dataset)
        build(scenario.model, dataset.shape, dataset.num_classes, seed=0)
        stacks = []
        for specs in entry.defenses:
            try:
                stack = build_stack(specs)
            except GradleakError as exc:
                raise GradleakError(f"{where}, defenses {stack_label(specs)!r}: {exc}") from None
            check_combination(scenario, stack, f"{where}, defenses {stack_label(specs)!r}")
            stacks.append((specs, stack))
        servers = []
        for spec in entry.servers:
            try:
                servers.append((spec, build_server(spec)))
            except GradleakError as exc:
                raise GradleakError(f"{where}, server {spec!r}: {exc}") from None
        cells = [(a, d, v) for v in servers for a in entry.attacks for d in stacks]
        for attack_spec, (specs, stack), (server_spec, server) in cells:
            for seed in settings.seeds:
                attack = seeded_attack(attack_spec, seed, f"{where}, attack {attack_spec!r}")
                seeded = dataclasses.replace(scenario, model_seed=scenario.model_seed + seed)
                run_config = {
                    "scenario": dataclasses.asdict(seeded),
                    "attack": {"name": attack.name, "config": _config_dict(attack)},
                    "defenses": [{"name": d.name, "config": _config_dict(d)} for d in stack],
                    "seed": seed,
                }
                if server.name != "honest":  # honest runs keep the keys they had before servers were an axis
                    run_config["server"] = {"name": server.name, "config": _config_dict(server)}
                name = entry.name if server.name == "honest" else f"{entry.name}/{server_spec} server"
                runs.append(Run(
                    key=run_key(run_config),
                    config=run_config,
                    scenario=seeded,
                    label={"scenario": name, "attack": attack_spec, "defense": stack_label(specs)},
                    attack=Component.of(attack),
                    defenses=tuple(Component.of(d) for d in stack),
                    seed=seed,
                    device=settings.device,
                    out=settings.out,
                    plugins=settings.plugins,
                    server=Component.of(server),
                    position=len(runs),
                ))
    keys = [r.key for r in runs]
    if len(set(keys)) != len(keys):
        raise GradleakError("the grid lists the same run twice (a repeated attack, defense, seed or scenario); remove the copy")
    return runs
