"""Issue 3's acceptance checks that take minutes (``pytest -m slow``); results in docs/benchmarks.md."""

import pytest

from gradleak.attacks import build_attack
from gradleak.eval.metrics import score

pytestmark = pytest.mark.slow

FIRST_IMAGES = [("photos", i) for i in range(6)] + [("faces", i) for i in range(8)]


@pytest.mark.parametrize("attack", ["dlg", "idlg"])
@pytest.mark.parametrize("dataset, index", FIRST_IMAGES)
def test_first_photos_and_faces_to_40_db(make_round, attack, dataset, index):
    round_ = make_round(dataset=dataset, index=index)
    scores = score(build_attack(attack).reconstruct(round_.view), round_.truth)
    assert scores.mean_psnr >= 40 and scores.label_accuracy == 1.0


@pytest.mark.parametrize(
    "model, dataset, floor",
    [("lenet-zhu", "photos", 20.0), ("lenet-zhu", "faces", 20.0),
     ("convnet:width=16", "photos", 15.0), ("convnet:width=16", "faces", 20.0)],
)
def test_inverting_gradients_floors_at_2000_iterations(make_round, model, dataset, floor):
    round_ = make_round(dataset=dataset, model=model)
    scores = score(build_attack("ig:iterations=2000").reconstruct(round_.view), round_.truth)
    assert scores.mean_psnr >= floor


@pytest.mark.parametrize("dataset", ["faces", "photos"])
def test_fedavg_inversion_beats_the_delta_as_a_gradient_at_five_local_steps(make_round, dataset):
    round_ = make_round(dataset=dataset, algorithm="fedavg", local_steps=5, learning_rate=0.1)
    unrolled = score(build_attack("fedavg:iterations=2000").reconstruct(round_.view), round_.truth)
    naive = score(build_attack("fedavg:iterations=2000,unroll=false").reconstruct(round_.view), round_.truth)
    assert unrolled.mean_psnr > naive.mean_psnr
