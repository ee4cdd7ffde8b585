"""Embedded datasets have the documented shapes, ranges and labels; local roots load or fail clearly."""

import hashlib
import pickle

import numpy as np
import pytest
import torch
import torchvision

from gradleak.data import PHOTOS, load_dataset, load_images
from gradleak.errors import GradleakError


def test_faces():
    faces = load_dataset("faces")
    assert faces.images.shape == (200, 1, 32, 32)
    assert faces.classes == ("non-face", "face")
    assert faces.labels[:100].eq(1).all() and faces.labels[100:].eq(0).all()
    assert 0 <= faces.images.min() and faces.images.max() <= 1 and faces.images.std() > 0.1


def test_photos_are_distinct_rgb_crops_labelled_by_photograph():
    photos = load_dataset("photos")
    assert len(PHOTOS) >= 8
    assert photos.images.shape == (5 * len(PHOTOS), 3, 32, 32)
    assert photos.labels[: len(PHOTOS)].tolist() == list(range(len(PHOTOS)))
    first = photos.images[: len(PHOTOS)].flatten(1)
    distances = torch.cdist(first, first) + torch.eye(len(PHOTOS)) * 1e9
    assert distances.min() > 1.0  # every whole photograph differs from every other
    assert 0 <= photos.images.min() and photos.images.max() <= 1
    assert torch.equal(photos.images, load_dataset("photos").images)  # deterministic


def test_digits():
    digits = load_dataset("digits")
    assert digits.images.shape == (1797, 1, 32, 32)
    assert sorted(set(digits.labels.tolist())) == list(range(10))
    assert 0 <= digits.images.min() and digits.images.max() <= 1


@pytest.mark.parametrize("name", ["faces", "photos", "digits"])
def test_normalization_round_trips(name):
    dataset = load_dataset(name)
    x, _ = dataset.get([0, 1])
    norm = dataset.normalization
    assert torch.allclose(norm.denormalize(norm.normalize(x)), x, atol=1e-6)
    low, high = norm.bounds(x)
    assert torch.allclose(norm.normalize(torch.zeros_like(x)), low.expand_as(x), atol=1e-6)
    assert torch.allclose(norm.normalize(torch.ones_like(x)), high.expand_as(x), atol=1e-6)


def test_user_images_are_cropped_resized_and_converted(tmp_path):
    from skimage import io

    rgba = np.zeros((40, 60, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 255
    io.imsave(tmp_path / "red.png", rgba, check_contrast=False)
    grey = (np.arange(50 * 50).reshape(50, 50) % 256).astype(np.uint8)
    io.imsave(tmp_path / "grey.png", grey, check_contrast=False)
    rgb = load_images([tmp_path / "red.png", tmp_path / "grey.png"], channels=3)
    assert rgb.shape == (2, 3, 32, 32)
    assert torch.allclose(rgb[0, 0], torch.ones(32, 32)) and rgb[0, 1:].abs().max() < 1e-6
    assert torch.allclose(rgb[1, 0], rgb[1, 1])  # grey becomes equal channels
    assert load_images([tmp_path / "red.png"], channels=1).shape == (1, 1, 32, 32)


def test_user_image_errors(tmp_path):
    with pytest.raises(GradleakError, match="does not exist"):
        load_images([tmp_path / "missing.png"])
    (tmp_path / "junk.png").write_text("not an image")
    with pytest.raises(GradleakError, match="cannot read .*junk.png as an image"):
        load_images([tmp_path / "junk.png"])


def test_missing_root_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(GradleakError, match="pass --data-root"):
        load_dataset("cifar10")
    with pytest.raises(GradleakError, match=rf"cifar10 not found under {tmp_path}.*--download"):
        load_dataset("cifar10", root=tmp_path)
    with pytest.raises(GradleakError, match="does not exist"):
        load_dataset("imagefolder", root=tmp_path / "nothing")


def _write_batch(path, images, labels):
    data = (images * 255).round().astype(np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)
    with open(path, "wb") as f:
        pickle.dump({"batch_label": path.name, "labels": list(labels), "data": data, "filenames": []}, f)


def test_cifar10_fixture_in_its_real_on_disk_format_loads_through_torchvision(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    expected = {}
    for name in names:
        images = rng.integers(0, 256, size=(4, 32, 32, 3)) / 255.0
        labels = rng.integers(0, 10, size=4)
        _write_batch(folder / name, images, labels)
        expected[name] = (images, labels)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": classes, "num_cases_per_batch": 4, "num_vis": 3072}, f)
    # torchvision verifies the real archive's checksums; point them at the fixture's files.
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in names}
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[n, md5[n]] for n in names[:5]])
    monkeypatch.setattr(cls, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": hashlib.md5((folder / "batches.meta").read_bytes()).hexdigest()})

    train = load_dataset("cifar10", root=tmp_path)
    test = load_dataset("cifar10", root=tmp_path, train=False)
    assert len(train) == 20 and len(test) == 4
    assert train.classes == tuple(classes) and train.shape == (3, 32, 32)
    images, labels = train.get([0, 5])
    assert labels.tolist() == [expected["data_batch_1"][1][0], expected["data_batch_2"][1][1]]
    assert np.allclose(images[0].permute(1, 2, 0).numpy(), expected["data_batch_1"][0][0], atol=1 / 255)
    assert train.normalization.mean == (0.4914, 0.4822, 0.4465)


def test_imagefolder(tmp_path):
    from skimage import io

    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        io.imsave(tmp_path / cls / "a.png", np.full((40, 40, 3), 128, dtype=np.uint8), check_contrast=False)
    dataset = load_dataset("imagefolder", root=tmp_path)
    assert dataset.classes == ("cats", "dogs") and len(dataset) == 2
    images, labels = dataset.get([0, 1])
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [0, 1]


def test_index_out_of_range_is_clear():
    with pytest.raises(GradleakError, match="index 500 is out of range for faces"):
        load_dataset("faces").get([500])
