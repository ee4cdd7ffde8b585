"""Every attack runs on CUDA and DLG still reaches 40 dB there (TF32 off); skipped without a GPU."""

import pytest
import torch

from gradleak.attacks import build_attack
from gradleak.attacks.dlg import DLG
from gradleak.attacks.many import ManySettings, reconstruct_many
from gradleak.eval.metrics import score
from gradleak.scenario import Scenario, build_round

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("attack", ["idlg", "rgap"])
def test_single_image_attacks_reach_40_db_on_cuda(attack):
    round_ = build_round(Scenario(dataset="faces", index=3, model_seed=1), device="cuda")
    reconstruction = build_attack(attack).reconstruct(round_.view)
    assert reconstruction.images.device.type == "cpu"
    scores = score(reconstruction, round_.truth)
    assert scores.mean_psnr >= 40 and scores.label_accuracy == 1.0


@pytest.mark.parametrize(
    "spec, fields",
    [
        ("dlg:iterations=50,restarts=1", dict(dataset="photos", batch_size=2)),
        ("ig:iterations=30", dict(dataset="photos", model="convnet:width=8")),
        ("gradinversion:iterations=20,group=2", dict(dataset="photos", model="convnet:width=8", batch_size=2, distinct_labels=True)),
        ("fedavg:iterations=20", dict(dataset="faces", algorithm="fedavg", local_steps=3, batch_size=2, local_batch_size=1)),
        ("idlg:labels=counts,iterations=30,restarts=1", dict(dataset="digits", batch_size=4)),
    ],
)
def test_attacks_run_on_cuda(spec, fields):
    round_ = build_round(Scenario(**fields), device="cuda")
    reconstruction = build_attack(spec).reconstruct(round_.view)
    assert reconstruction.images.shape == round_.truth.images.shape
    assert torch.isfinite(reconstruction.images).all()


def test_many_mode_narrows_on_cuda():
    rounds = [build_round(Scenario(dataset="faces", index=i, model_seed=1), device="cuda") for i in (3, 4, 5)]
    reconstructions = reconstruct_many([r.view for r in rounds], DLG.Config(), ManySettings(slots=2))
    for reconstruction, round_ in zip(reconstructions, rounds):
        assert score(reconstruction, round_.truth).mean_psnr >= 40
