"""Scenarios pick the documented examples for each client and train the global model once."""

import pytest
import torch

from gradleak.errors import GradleakError
from gradleak.scenario import Scenario, build_model, build_round, client_indices, scenario_dataset


def test_clients_hold_consecutive_examples_victim_first():
    scenario = Scenario(dataset="faces", index=198, batch_size=2, cohort_size=2)
    assert client_indices(scenario, scenario_dataset(scenario)) == [[198, 199], [0, 1]]


def test_distinct_labels():
    scenario = Scenario(dataset="digits", batch_size=8, distinct_labels=True)
    dataset = scenario_dataset(scenario)
    (indices,) = client_indices(scenario, dataset)
    assert len(set(dataset.labels[indices].tolist())) == 8
    with pytest.raises(GradleakError, match="only 2 classes"):
        client_indices(Scenario(dataset="faces", batch_size=3, distinct_labels=True), scenario_dataset(Scenario(dataset="faces")))


def test_round_from_a_scenario():
    outcome = build_round(Scenario(dataset="photos", index=2, batch_size=2))
    assert outcome.view.num_examples == 2 and outcome.truth.labels.tolist() == [2, 3]
    assert outcome.view.input_shape == (3, 32, 32) and outcome.view.num_classes == 10


def test_user_images_get_fixed_normalization(tmp_path):
    from skimage import io
    import numpy as np

    io.imsave(tmp_path / "x.png", np.full((20, 20, 3), 200, dtype=np.uint8), check_contrast=False)
    outcome = build_round(Scenario(images=(str(tmp_path / "x.png"),), labels=(4,)))
    assert outcome.view.normalization.mean == (0.5, 0.5, 0.5)  # not the victim image's own statistics
    assert outcome.truth.labels.tolist() == [4]
    with pytest.raises(GradleakError, match="labels \\[12\\] must lie in 0..9"):
        build_round(Scenario(images=(str(tmp_path / "x.png"),), labels=(12,)))


def test_trained_models_are_cached_and_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADLEAK_CACHE", str(tmp_path))
    scenario = Scenario(dataset="faces", trained_epochs=0.5)
    dataset = scenario_dataset(scenario)
    first = build_model(scenario, dataset)
    assert len(list((tmp_path / "models").glob("*.pt"))) == 1
    second = build_model(scenario, dataset)
    untrained = build_model(Scenario(dataset="faces"), dataset)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), untrained.parameters()))
