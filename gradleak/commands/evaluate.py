"""``gradleak evaluate``: a resumable grid of scenarios × attacks × defenses × seeds."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from gradleak.commands.options import field_type, in_file, out_dir
from gradleak.eval.sweep.backends import BACKENDS
from gradleak.eval.sweep.plan import SweepSettings, load_config, plan
from gradleak.eval.sweep.execute import RESULTS, run_grid
from gradleak.eval.summary import group_runs, table_rows, text_table
from gradleak.scenario import Scenario


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="run attacks × defenses × seeds on scenarios; results.jsonl, resumable",
        description="Run a grid from a TOML file (--config) and/or flags. Rerunning the same "
        "command skips finished runs. Flags override the file; scenario flags apply to every "
        "scenario of the file. See docs/harness.md.",
    )
    parser.add_argument("--config", type=in_file, metavar="FILE.toml", help="the sweep to run (see docs/harness.md)")
    parser.add_argument("--out", type=out_dir, help="output folder (results.jsonl, images/)")
    parser.add_argument("--attack", dest="attacks", action="append", metavar="SPEC",
                        help="an attack spec, e.g. dlg or ig:iterations=2000 (repeatable)")
    parser.add_argument("--defense", dest="defenses", action="append", metavar="STACK",
                        help="a defense stack: none, a spec, or specs joined by '+' (repeatable)")
    parser.add_argument("--seeds", type=field_type(SweepSettings, "seeds"), nargs="+", metavar="S", help="run seeds (default 0)")
    parser.add_argument("--workers", type=field_type(SweepSettings, "workers"), help="worker processes, or Ray tasks in flight (default 1)")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="process",
                        help="where runs execute: process (worker processes here, default) or ray (docs/harness.md)")
    parser.add_argument("--address", help="with --backend ray: the cluster to join (default $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--threshold-db", type=field_type(SweepSettings, "threshold_db"), help="PSNR counted as attack success (default 20)")
    parser.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE",
                        help="import MODULE first (and in each worker), e.g. to register your own attack")
    scenario = parser.add_argument_group("scenario (a field of every scenario; see gradleak.scenario.Scenario)")
    for f in dataclasses.fields(Scenario):
        flag = "--" + f.name.replace("_", "-")
        hint = typing.get_type_hints(Scenario, include_extras=True)[f.name]
        kwargs: dict[str, typing.Any] = {"dest": f"scenario_{f.name}", "default": None}
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            kwargs["nargs"] = "+"
            kwargs["metavar"] = f.name.upper().rstrip("S")
            kwargs["type"] = field_type(Scenario, f.name)
        else:
            kwargs["metavar"] = f.name.upper()
            kwargs["type"] = field_type(Scenario, f.name)
        scenario.add_argument(flag, help=f"default {f.default!r}", **kwargs)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = {k: getattr(args, k) for k in ("out", "attacks", "defenses", "seeds", "workers", "device", "threshold_db", "plugins")}
    scenario = {
        name[len("scenario_"):]: value for name, value in vars(args).items()
        if name.startswith("scenario_") and value is not None
    }
    config = load_config(args.config, overrides, scenario)
    runs = plan(config)
    settings = config.settings
    print(f"{len(runs)} run(s) in the grid; results in {settings.out}/{RESULTS}")
    outcome = run_grid(runs, settings.out, settings.workers, args.backend, args.address)
    keys = {r.key for r in runs}
    records = [r for r in outcome.store.records if r.get("key") in keys]
    print(text_table(table_rows(group_runs(records), settings.threshold_db)))
    print(outcome.describe())
    print(f"report: gradleak report {settings.out}/{RESULTS} --out {settings.out}/report")
    return 1 if outcome.failures else 0
