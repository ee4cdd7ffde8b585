"""``gradleak property``: property inference from a client's update (Melis et al., S&P 2019).

``gradleak property --dataset faces --json`` trains a random forest on shadow releases with and
without the property (a bright corner tag on some of a client's images) and prints the ROC AUC
on held-out releases with a 95% bootstrap interval (:mod:`gradleak.attacks.property`).
``--cohort 16 --defense secagg`` attacks a secure aggregate; ``--defense dp-fedavg:epsilon=8`` a DP release.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

from gradleak.attacks.property import PropertyConfig, property_inference
from gradleak.commands.options import field_type, out_dir
from gradleak.eval.measures import measure_once
from gradleak.eval.metrics import jsonable

OPTIONS = ("dataset", "model", "batch", "carriers", "tag", "cohort", "defense", "shadows", "trials", "trees", "seed")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "property",
        help="property inference: does a client's update show an artefact in its data?",
        description="Shadow releases with and without a label-independent property train a random forest "
        "that predicts the property from a client's release; prints ROC AUC with a 95%% bootstrap interval.",
    )
    defaults = {f.name: f.default for f in fields(PropertyConfig)}
    for name in OPTIONS:
        kwargs = {"choices": ("digits", "faces")} if name == "dataset" else ({} if name in ("model", "defense") else {"type": field_type(PropertyConfig, name)})
        parser.add_argument("--" + name, default=defaults[name], **kwargs, help=f"default {defaults[name]}")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=out_dir, metavar="DIR",
                        help="also append the result to DIR/results.jsonl for `gradleak report` (reused if already there)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = PropertyConfig(**{name: getattr(args, name) for name in OPTIONS})
    if args.out:
        result = measure_once(args.out, "property", config.defense, config, lambda: property_inference(config).to_dict())
    else:
        result = property_inference(config).to_dict()
    if args.json:
        print(json.dumps(jsonable(result)))
        return 0
    print(
        f"{result['dataset']}, {result['defense']}, cohort {result['cohort']}: property AUC {result['auc']:.3f} "
        f"(95% interval {result['auc_low']:.3f}-{result['auc_high']:.3f}, {result['trials']} held-out releases)"
    )
    return 0
