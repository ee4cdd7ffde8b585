"""The analytic linear-layer leak: x = dW_i / db_i from the rows one image alone activates."""

import pytest
import torch

from gradleak.attacks import build_attack
from gradleak.errors import GradleakError
from gradleak.eval.metrics import psnr, score
from gradleak.scenario import Scenario, build_round


@pytest.mark.parametrize("model", ["mlp", "mlp:activation=relu"])
def test_one_image_on_an_mlp_is_exact(model):
    round_ = build_round(Scenario(dataset="faces", model=model))
    scores = score(build_attack("analytic").reconstruct(round_.view), round_.truth)
    assert scores.mean_psnr >= 60


@pytest.mark.parametrize("dataset", ["photos", "faces", "digits"])
def test_a_relu_batch_gives_back_the_images_that_fire_rows_alone(dataset):
    round_ = build_round(Scenario(dataset=dataset, model="mlp:activation=relu", batch_size=8))
    view, truth = round_.view, round_.truth
    # Which images fire some row of the first layer with no other image (the truth side knows).
    first = view.model.net[1]
    x = view.normalization.normalize(truth.images).flatten(1)
    fires = (first(x) > 0).T  # rows x images
    rows_alone = torch.zeros(len(truth.images), dtype=torch.long)
    for f in fires:
        if int(f.sum()) == 1:
            rows_alone[int(torch.nonzero(f)[0])] += 1
    reconstruction = build_attack("analytic").reconstruct(view)
    assert len(reconstruction.images) <= view.num_examples
    exact = [max(psnr(guess, image) for guess in reconstruction.images) >= 60 for image in truth.images]
    # Two rows alone confirm each other, so those images always come back; one row alone usually does.
    assert all(exact[i] for i in range(len(exact)) if rows_alone[i] >= 2)
    alone = [i for i in range(len(exact)) if rows_alone[i] >= 1]
    assert alone and sum(exact[i] for i in alone) >= len(alone) / 2


def test_a_model_without_a_linear_input_layer_is_refused():
    round_ = build_round(Scenario(dataset="faces", model="lenet-zhu"))
    with pytest.raises(GradleakError, match="reads 768 features"):
        build_attack("analytic").reconstruct(round_.view)
