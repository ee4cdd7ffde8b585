"""A scenario: which data, which model, which clients, how they train. Turned into one round.

The victim is client 0. With ``batch_size = B`` it holds B examples starting at ``index``
(optionally skipping repeated labels, for batch label-recovery experiments); the other
``cohort_size - 1`` clients hold the following examples, B each. Instead of a dataset the victim
can hold the user's own image files.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import torch

from gradleak import __version__
from gradleak.data import ImageDataset, load_dataset, load_images
from gradleak.defenses import DefenseStack
from gradleak.errors import GradleakError
from gradleak.federated import Client, Round, run_round
from gradleak.session import Session, run_session
from gradleak.models import build
from gradleak.servers import Server
from gradleak.spec import Range, Seed
from gradleak.threat import LocalTraining, Normalization
from gradleak.training import train

# User images carry no dataset statistics; a fixed normalisation keeps the victim image's own
# mean and spread from leaking to the server through "public" preprocessing constants.
USER_IMAGE_NORMALIZATION = 0.5


# A victim's examples in one update, and the classes of a model: beyond these a round exhausts memory.
MAX_BATCH = 4096
MAX_CLASSES = 100_000
# Public examples a malicious server may use to prepare its model (estimating quantiles needs few).
MAX_PUBLIC = 2048


@dataclass(frozen=True)
class Scenario:
    dataset: str = "photos"
    model: str = "lenet-zhu"  # a model spec, e.g. "convnet:width=16"
    index: Annotated[int, Range(0, 10**9)] = 0  # the victim's first example
    batch_size: Annotated[int, Range(1, MAX_BATCH)] = 1  # examples per client
    distinct_labels: bool = False  # skip examples whose label the client already holds
    images: tuple[str, ...] = ()  # the user's image files instead of a dataset
    labels: tuple[Annotated[int, Range(0, MAX_CLASSES - 1)], ...] = ()  # their labels (default 0 each)
    num_classes: Annotated[int, Range(1, MAX_CLASSES)] = 10  # classes of the model, for user images
    channels: Annotated[int, Range(1, 3)] = 3  # channels user images are read with
    cohort_size: Annotated[int, Range(1, 10_000)] = 1
    algorithm: Literal["fedsgd", "fedavg"] = "fedsgd"
    local_steps: Annotated[int, Range(1, 100_000)] = 1  # FedAvg: SGD steps each client runs
    learning_rate: Annotated[float, Range(0, None, low_open=True)] = 0.1  # FedAvg: client learning rate
    local_batch_size: Annotated[int | None, Range(1, MAX_BATCH)] = None  # FedAvg: mini-batch per step (None: all local data)
    trained_epochs: Annotated[float, Range(0, 10_000)] = 0.0  # train the global model this long before the round
    model_seed: Seed = 0
    model_mode: Literal["train", "eval"] = "train"
    known_labels: bool = False  # grant the server the labels as side information
    data_root: str | None = None
    download: bool = False

    @property
    def local(self) -> LocalTraining:
        return LocalTraining(self.algorithm, self.local_steps, self.learning_rate, self.local_batch_size)


@functools.lru_cache(maxsize=8)
def _dataset(name: str, root: str | None, download: bool) -> ImageDataset:
    return load_dataset(name, root=root, download=download)


def scenario_dataset(scenario: Scenario) -> ImageDataset:
    """The dataset a scenario draws from (user images become a small in-memory dataset)."""
    if not scenario.images:
        return _dataset(scenario.dataset, scenario.data_root, scenario.download)
    images = load_images(scenario.images, channels=scenario.channels)
    labels = list(scenario.labels) or [0] * len(images)
    if len(labels) != len(images):
        raise GradleakError(f"{len(scenario.images)} image file(s) but {len(labels)} label(s); give one label per image")
    if not all(0 <= label < scenario.num_classes for label in labels):
        raise GradleakError(f"labels {labels} must lie in 0..{scenario.num_classes - 1}")
    stats = (USER_IMAGE_NORMALIZATION,) * images.shape[1]
    return ImageDataset(
        name="images",
        classes=tuple(str(c) for c in range(scenario.num_classes)),
        normalization=Normalization(stats, stats),
        images=images,
        labels=torch.tensor(labels),
    )


def client_indices(scenario: Scenario, dataset: ImageDataset) -> list[list[int]]:
    """The example indices of each client, victim first."""
    if scenario.images:
        if scenario.cohort_size != 1:
            raise GradleakError("with --image the victim is the only client; leave the cohort size at 1")
        return [list(range(len(dataset)))]
    needed = scenario.batch_size * scenario.cohort_size
    if not 0 <= scenario.index < len(dataset):
        raise GradleakError(f"index {scenario.index} is out of range for {dataset.name} (0..{len(dataset) - 1})")
    if needed > len(dataset):
        raise GradleakError(f"{scenario.cohort_size} clients x {scenario.batch_size} examples exceed {dataset.name}'s {len(dataset)}")
    order = [(scenario.index + i) % len(dataset) for i in range(len(dataset))]
    if not scenario.distinct_labels:
        return [order[k * scenario.batch_size : (k + 1) * scenario.batch_size] for k in range(scenario.cohort_size)]
    _, labels = dataset.get(order)
    clients: list[list[int]] = []
    pool = list(zip(order, labels.tolist()))
    for _ in range(scenario.cohort_size):
        chosen, seen = [], set()
        for item in list(pool):
            if item[1] not in seen:
                chosen.append(item)
                seen.add(item[1])
                pool.remove(item)
            if len(chosen) == scenario.batch_size:
                break
        if len(chosen) < scenario.batch_size:
            raise GradleakError(
                f"{dataset.name} has only {dataset.num_classes} classes; a batch of {scenario.batch_size} "
                "cannot have distinct labels"
            )
        clients.append([index for index, _ in chosen])
    return clients


def cache_dir() -> Path:
    """Where trained global models are kept between runs (``$GRADLEAK_CACHE``, else ~/.cache/gradleak)."""
    return Path(os.environ.get("GRADLEAK_CACHE", Path.home() / ".cache" / "gradleak"))


def build_model(scenario: Scenario, dataset: ImageDataset, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The global model the server sends: built from its seed, trained first if asked.

    Training is deterministic given the scenario, so trained weights are cached on disk and a
    sweep trains each (dataset, model, seed, epochs) once.
    """
    model = build(scenario.model, dataset.shape, dataset.num_classes, seed=scenario.model_seed).to(device)
    if scenario.trained_epochs <= 0:
        return model
    key = f"{dataset.name}|{scenario.model}|{scenario.model_seed}|{scenario.trained_epochs}|{dataset.shape}|{__version__}"
    path = cache_dir() / "models" / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".pt")
    if scenario.images or not path.exists():
        train(model, dataset, scenario.trained_epochs, seed=scenario.model_seed)
        if not scenario.images:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save(model.state_dict(), partial)
            os.replace(partial, path)  # atomic: parallel workers never read half a file
        return model
    model.load_state_dict(torch.load(path, map_location=device))
    return model


def build_round(
    scenario: Scenario,
    defenses: DefenseStack = DefenseStack(),
    device: torch.device | str = "cpu",
    noise_seed: int | None = None,
    server: Server | None = None,
) -> Round:
    """Run the scenario's round under ``defenses`` and ``server`` (default honest); returns the
    server's view and the truth. The examples no client holds are the server's public data."""
    dataset = scenario_dataset(scenario)
    model = build_model(scenario, dataset, device)
    indices = client_indices(scenario, dataset)
    clients = [Client(k, *dataset.get(held)) for k, held in enumerate(indices)]
    public = None
    if server is not None and server.needs_public and not scenario.images:
        taken = {i for held in indices for i in held}
        rest = [i for i in range(len(dataset)) if i not in taken][:MAX_PUBLIC]
        public = dataset.get(rest)[0] if rest else None
    return run_round(
        model,
        dataset.normalization,
        clients,
        dataset.num_classes,
        local=scenario.local,
        defenses=defenses,
        known_labels=scenario.known_labels,
        model_mode=scenario.model_mode,
        noise_seed=noise_seed,
        server=server,
        public=public,
    )


def build_join_session(scenario: Scenario, defenses: DefenseStack = DefenseStack(), device: torch.device | str = "cpu",
                       noise_seed: int | None = None, fresh: bool = False) -> Session:
    """The scenario's cohort without its victim (client 0), then with it joining last.

    ``fresh``: the other clients train on the next examples in the second round (new
    mini-batches), instead of repeating their first-round data exactly.
    """
    if scenario.cohort_size < 2:
        raise GradleakError("a client joining needs others already in the round: give a cohort size of at least 2")
    dataset = scenario_dataset(scenario)
    model = build_model(scenario, dataset, device)
    indices = client_indices(scenario, dataset)
    clients = [Client(k, *dataset.get(held)) for k, held in enumerate(indices)]
    later = clients[1:]
    if fresh:
        shifted = dataclasses.replace(scenario, index=(scenario.index + sum(map(len, indices))) % len(dataset))
        later = [Client(k, *dataset.get(held)) for k, held in enumerate(client_indices(shifted, dataset)) if k > 0]
    return run_session(model, dataset.normalization, [clients[1:], [*later, clients[0]]], dataset.num_classes,
                       local=scenario.local, defenses=defenses, model_mode=scenario.model_mode,
                       noise_seed=noise_seed, known_labels=scenario.known_labels)
