"""Datasets, nothing downloaded unless asked.

Embedded (shipped inside scikit-image and scikit-learn, always available offline):

- ``faces``: scikit-image's LFW subset, 200 grey 25x25 images, the first 100 faces and the
  next 100 non-faces (label 1 = face), resized to 32x32.
- ``photos``: scikit-image's RGB photographs as deterministic 32x32 crops; the first ten
  indices are the whole photographs (centre square), later ones are quadrant crops. The label
  is the photograph.
- ``digits``: scikit-learn's 1,797 8x8 handwritten digits, upsampled to 32x32.

From a local root through torchvision (``--data-root``; ``--download`` opt-in): ``cifar10``,
``cifar100``, ``mnist``, ``fashion-mnist``, ``imagefolder``. And the user's own pictures
(:func:`load_images`).

Images are float tensors in [0, 1], shape (C, H, W); every dataset carries the
:class:`~gradleak.threat.Normalization` its models are trained with.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gradleak.errors import GradleakError
from gradleak.registry import Registry
from gradleak.threat import Normalization

IMAGE_SIZE = 32


@dataclass
class ImageDataset:
    """Images in [0, 1] with integer labels; either held in memory or read lazily from ``source``."""

    name: str
    classes: tuple[str, ...]
    normalization: Normalization
    images: torch.Tensor | None = None  # (N, C, H, W) when in memory
    labels: torch.Tensor | None = None  # (N,)
    source: Any = None  # a torchvision dataset yielding (tensor image, label) otherwise

    def __len__(self) -> int:
        return len(self.labels) if self.source is None else len(self.source)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.get([0])[0].shape[1:])

    def get(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, C, H, W) and labels (B,) at ``indices``."""
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < len(self)]
        if bad:
            raise GradleakError(f"index {bad[0]} is out of range for {self.name} (0..{len(self) - 1})")
        if self.source is None:
            return self.images[indices], self.labels[indices]
        pairs = [self.source[i] for i in indices]
        return torch.stack([img for img, _ in pairs]), torch.tensor([lbl for _, lbl in pairs])


DATASETS: Registry[Callable[..., ImageDataset]] = Registry("dataset")


def load_dataset(
    name: str, root: str | Path | None = None, download: bool = False, train: bool = True
) -> ImageDataset:
    """Load dataset ``name``; torchvision ones need ``root`` (and fetch only if ``download``)."""
    return DATASETS.get(name)(root=root, download=download, train=train)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def _centre_square(image: torch.Tensor) -> torch.Tensor:
    _, height, width = image.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[:, top : top + side, left : left + side]


def _in_memory(name: str, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> ImageDataset:
    images = images.float().contiguous()
    return ImageDataset(
        name=name,
        classes=tuple(classes),
        normalization=Normalization.of(images),
        images=images,
        labels=labels.long(),
    )


@DATASETS.register("faces")
def faces(**_: Any) -> ImageDataset:
    from skimage.data import lfw_subset

    raw = torch.from_numpy(lfw_subset()).float().unsqueeze(1)  # (200, 1, 25, 25), in [0, 1]
    labels = torch.cat([torch.ones(100), torch.zeros(100)])  # skimage: faces first, then non-faces
    return _in_memory("faces", _resize(raw, IMAGE_SIZE), labels, ("non-face", "face"))


# scikit-image photographs bundled with the package (no pooch download needed).
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "stereo_motorcycle",
    "logo",
)


def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo pairs: take the left view
        image = image[0]
    return image[..., :3]  # drop the logo's alpha channel


@DATASETS.register("photos")
def photos(**_: Any) -> ImageDataset:
    """Index ``k * 10 + p``: crop ``k`` of photograph ``p`` (k = 0 centre square, 1-4 quadrants)."""
    crops: list[list[torch.Tensor]] = []
    for name in PHOTOS:
        image = torch.from_numpy(_photo(name)).permute(2, 0, 1).float() / 255.0
        square = _centre_square(image)
        half = square.shape[-1] // 2
        quadrants = [square[:, r : r + half, c : c + half] for r in (0, half) for c in (0, half)]
        crops.append([_resize(part.unsqueeze(0), IMAGE_SIZE)[0] for part in [square, *quadrants]])
    images = torch.stack([crops[p][k] for k in range(5) for p in range(len(PHOTOS))])
    labels = torch.arange(len(PHOTOS)).repeat(5)
    return _in_memory("photos", images, labels, PHOTOS)


@DATASETS.register("digits")
def digits(**_: Any) -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = torch.from_numpy(bunch.images).float().unsqueeze(1) / 16.0  # 8x8, values 0..16
    images = F.interpolate(raw, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return _in_memory("digits", images.clamp(0, 1), torch.from_numpy(bunch.target), [str(d) for d in range(10)])


# --- torchvision datasets from a local root -------------------------------------------

_TORCHVISION_HELP = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("CIFAR100", "cifar-100-python", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ("MNIST", "MNIST/raw", (0.1307,), (0.3081,)),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw", (0.2860,), (0.3530,)),
}


def _require_root(name: str, root: str | Path | None) -> Path:
    if root is None:
        raise GradleakError(
            f"dataset {name!r} is read from a local folder: pass --data-root DIR "
            "(add --download to fetch it there once, which needs internet)"
        )
    return Path(root).expanduser()


def _torchvision(name: str) -> Callable[..., ImageDataset]:
    cls_name, folder, mean, std = _TORCHVISION_HELP[name]

    def load(root: str | Path | None = None, download: bool = False, train: bool = True, **_: Any) -> ImageDataset:
        import torchvision
        from torchvision import transforms

        path = _require_root(name, root)
        transform = transforms.Compose([transforms.Resize(IMAGE_SIZE), transforms.ToTensor()])
        try:
            source = getattr(torchvision.datasets, cls_name)(
                str(path), train=train, download=download, transform=transform
            )
        except RuntimeError as exc:
            raise GradleakError(
                f"{name} not found under {path} (expected {path / folder}): place the dataset "
                f"there or add --download to fetch it (needs internet) [{exc}]"
            ) from None
        return ImageDataset(name, tuple(source.classes), Normalization(mean, std), source=source)

    return load


for _name in _TORCHVISION_HELP:
    DATASETS.register(_name)(_torchvision(_name))


@DATASETS.register("imagefolder")
def imagefolder(root: str | Path | None = None, **_: Any) -> ImageDataset:
    """A folder with one sub-folder per class (torchvision's ImageFolder), centre-cropped to 32x32."""
    from torchvision import datasets, transforms

    path = _require_root("imagefolder", root)
    if not path.is_dir():
        raise GradleakError(f"image folder {path} does not exist; pass --data-root with one sub-folder per class")
    transform = transforms.Compose(
        [transforms.Resize(IMAGE_SIZE), transforms.CenterCrop(IMAGE_SIZE), transforms.ToTensor()]
    )
    try:
        source = datasets.ImageFolder(str(path), transform=transform)
    except (FileNotFoundError, RuntimeError) as exc:
        raise GradleakError(f"cannot read {path} as an image folder: {exc}") from None
    channels = source[0][0].shape[0]
    return ImageDataset("imagefolder", tuple(source.classes), Normalization((0.5,) * channels, (0.5,) * channels), source=source)


# --- the user's own pictures ------------------------------------------------------------


def load_images(paths: Sequence[str | Path], channels: int = 3, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Read image files, centre-crop to a square and resize to ``size``; returns (B, C, H, W) in [0, 1]."""
    from skimage import io
    from skimage.color import gray2rgb, rgb2gray, rgba2rgb

    images = []
    for path in map(Path, paths):
        if not path.is_file():
            raise GradleakError(f"image file {path} does not exist")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                array = io.imread(str(path))
        except Exception as exc:  # skimage raises many types for unreadable files
            raise GradleakError(f"cannot read {path} as an image: {exc}") from None
        array = np.asarray(array, dtype=np.float64)
        array = array / (65535.0 if array.max() > 255 else 255.0 if array.max() > 1 else 1.0)
        if array.ndim == 3 and array.shape[-1] == 4:
            array = rgba2rgb(array)
        if channels == 1 and array.ndim == 3:
            array = rgb2gray(array)[..., None]
        elif channels == 3 and array.ndim == 2:
            array = gray2rgb(array)
        elif array.ndim == 2:
            array = array[..., None]
        image = torch.from_numpy(array).float().permute(2, 0, 1)
        images.append(_resize(_centre_square(image).unsqueeze(0), size)[0])
    if not images:
        raise GradleakError("no image files given")
    return torch.stack(images)
