"""Property inference (Melis et al. 2019): a corner tag on 2 of 32 digits shows in one upload,
and fades inside a secure aggregate and under DP-FedAvg."""

from __future__ import annotations

import json

import torch

from gradleak.attacks.property import PropertyConfig, features, property_inference, tag
from gradleak.cli import main

SMALL = dict(shadows=100, trials=60, trees=40)


def test_the_tag_marks_only_the_corner():
    images = torch.zeros(2, 1, 8, 8)
    tagged = tag(images, 2)
    assert tagged[..., :2, :2].eq(1).all() and tagged.sum() == 2 * 4 and images.sum() == 0


def test_row_ratio_features_recover_the_mean_input():
    # One example: dL/dW_j / dL/db_j is the input itself, for every row j (Phong et al. 2017).
    x = torch.rand(5)
    grad_b = torch.tensor([0.5, -2.0, 3.0])
    assert torch.allclose(torch.from_numpy(features((grad_b[:, None] * x, grad_b))), x, atol=1e-6)


def test_the_property_shows_in_one_upload_and_fades_under_dp():
    single = property_inference(PropertyConfig(**SMALL))
    private = property_inference(PropertyConfig(defense="dp-fedavg:epsilon=8", **SMALL))
    assert single.auc >= 0.8 and single.auc_low <= single.auc <= single.auc_high
    assert private.auc <= 0.7


def test_cli_property_json(capsys):
    assert main(["property", "--dataset", "digits", "--shadows", "40", "--trials", "20", "--trees", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"auc", "auc_low", "auc_high", "trials"} <= out.keys() and out["trials"] == 20
