"""Join/leave differencing: the difference of two releases is the joiner's upload, and gives it away."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from gradleak.attacks import build_attack
from gradleak.attacks.differencing import client_view, difference
from gradleak.defenses import DefenseStack, build_stack
from gradleak.defenses.secagg.aggregator import SecureAggregation
from gradleak.errors import GradleakError
from gradleak.eval.differencing import rare_class_trials
from gradleak.eval.metrics import score
from gradleak.scenario import Scenario
from gradleak.scenario import build_join_session

FACES = Scenario(dataset="faces", cohort_size=8)


@functools.lru_cache(maxsize=4)
def session(defense: str):
    return build_join_session(FACES, build_stack([defense]), noise_seed=1)


def joiner_upload(s):
    view = s.rounds[-1].view
    return s.clients[0].upload(view.model, view.normalization, view.local, DefenseStack(), torch.Generator())


def test_difference_is_the_joiners_upload_within_one_fixed_point_step():
    s = session("secagg:seed=0")  # the same rounding seed: the others' rounding repeats in both rounds
    before, after = s.releases
    update, client, weight = difference(before, after)
    assert (client, weight) == (0, 1)
    step = SecureAggregation().encoder(sum(after.weights)).step
    for got, true, a, b in zip(update, joiner_upload(s), before.weighted_sum(), after.weighted_sum()):
        # one step of the joiner's own rounding, plus float32 storage of the two released means
        bound = step + 2.0**-24 * (a.abs() + b.abs())
        assert bool(((got - true.double()).abs() <= 1.01 * bound).all())


def test_difference_with_fresh_rounding_stays_within_the_rounding_of_every_upload():
    s = session("secagg")
    before, after = s.releases
    update, _, _ = difference(before, after)
    step = SecureAggregation().encoder(sum(after.weights)).step
    worst = sum(before.weights) + sum(after.weights)  # each upload's stochastic rounding moves it by under one step
    for got, true, a, b in zip(update, joiner_upload(s), before.weighted_sum(), after.weighted_sum()):
        bound = worst * step + 2.0**-24 * (a.abs() + b.abs())
        assert bool(((got - true.double()).abs() <= bound).all())
        assert float((got - true.double()).abs().max()) < 1e-5 * float(true.abs().max())


def test_reversed_rounds_give_the_leaver_with_the_same_sign():
    before, after = session("secagg:seed=0").releases
    joined, _, _ = difference(before, after)
    left, client, _ = difference(after, before)  # the same client leaving
    assert client == 0
    assert all(torch.equal(j, l) for j, l in zip(joined, left))


def test_rounds_that_differ_by_more_than_one_client_are_refused():
    s = session("secagg:seed=0")
    first = s.releases[0]
    same = type(first)(first.client_ids, first.weights, first.update)
    with pytest.raises(GradleakError, match="differ by one client"):
        difference(first, same)


def test_idlg_on_the_difference_recovers_the_joiners_face():
    s = session("secagg")
    attack = build_attack("differencing:inner=idlg,iterations=2000")
    reconstruction = attack.reconstruct(s.view)
    scores = score(reconstruction, s.truth)
    assert s.truth.client_ids == (0,)
    assert scores.mean_psnr > 40, scores.mean_psnr
    assert client_view(s.view).num_examples == 1


def test_rare_class_is_inferred_in_20_of_20_trials_without_dp():
    by_label, _ = rare_class_trials(20, ("secagg",))
    assert by_label.correct == 20


def test_the_attack_command_differences_a_join(capsys, tmp_path):
    from gradleak.cli import main

    argv = ["attack", "--attack", "differencing:inner=idlg", "--dataset", "faces", "--cohort-size", "8",
            "--defense", "secagg", "--iterations", "2000", "--json", "--out", str(tmp_path)]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["psnr"] > 40 and result["true_labels"] == [1] and result["info"]["held_classes"] == "1"
    assert main(["attack", "--attack", "differencing", "--dataset", "faces", "--out", str(tmp_path)]) == 2
    assert "cohort size of at least 2" in capsys.readouterr().err
