"""Property inference from an update (Melis, Song, De Cristofaro, Shmatikov, "Exploiting Unintended
Feature Leakage in Collaborative Learning", S&P 2019, Sec. 5.2 "passive property inference").

The property is independent of the task's label: ``carriers`` of a client's ``batch`` images carry
an artefact, a bright ``tag`` x ``tag`` square in the top-left corner (a scanner tag, a watermark).
The server computes shadow updates on public data (the first half of the dataset) with and
without the property, trains a random forest (the paper's classifier) on features of each
release, and predicts the property of target updates computed on the private half. The
release it attacks is the client's update alone (``cohort`` 1), or the mean of ``cohort`` clients'
updates of which only the target may carry the property (what secure aggregation reveals: the
real protocol outputs exactly this mean up to its fixed-point rounding, tested with it, so it is
not rerun per trial), and it may pass through a DP defense's client and server stages
(``dp-fedavg``: clipped, summed, noised). The attacker's shadows go through the same release.

Features: for a first layer ``y = W x + b`` each row's gradient ratio ``dL/dW_j / dL/db_j`` is a
weighted mean of the batch's inputs (the analytic-leak primitive, Phong et al. 2017), and its median
over the rows is a robust estimate of the batch's mean image, where an artefact shows directly.
Without such a layer the features are the release's absolute values, as in Melis et al.

Reported: ROC AUC on held-out target releases with a 95% percentile bootstrap interval
(Efron, Tibshirani 1993) over those trials.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Annotated

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score

from gradleak import federated, models
from gradleak.data import load_dataset
from gradleak.defenses import ClientContext, build_stack
from gradleak.errors import GradleakError
from gradleak.spec import Range

BOOTSTRAP = 1000  # resamples of the held-out trials for the AUC's interval


@dataclass(frozen=True)
class PropertyConfig:
    dataset: str = "digits"  # embedded (digits or faces); its first half is the attacker's public data
    model: str = "mlp:hidden=16"  # the global model the clients compute FedSGD updates of
    batch: Annotated[int, Range(2, 512)] = 32  # a client's examples in one update
    carriers: Annotated[int, Range(1, 512)] = 2  # of them carrying the tag (PAPERS.md's quick trial: 2 of 32)
    tag: Annotated[int, Range(1, 16)] = 2  # side of the bright corner square, in pixels
    cohort: Annotated[int, Range(1, 256)] = 1  # clients whose mean is released (1: a single upload)
    defense: str = "none"  # "none", "secagg" (the mean), or a DP spec such as "dp-fedavg:epsilon=8"
    shadows: Annotated[int, Range(8, 100_000)] = 400  # shadow releases the classifier learns from, half with the property
    trials: Annotated[int, Range(8, 100_000)] = 200  # held-out target releases, half with the property
    trees: Annotated[int, Range(1, 10_000)] = 100  # random forest size (Melis et al. use a random forest)
    seed: int = 0  # data, model, forest and noise (reproducible, not private)


@dataclass(frozen=True)
class PropertyResult:
    dataset: str
    defense: str
    cohort: int
    auc: float
    auc_low: float
    auc_high: float
    confidence: float
    trials: int
    shadows: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def tag(images: torch.Tensor, side: int) -> torch.Tensor:
    """The artefact: a bright ``side`` x ``side`` square in the top-left corner, in [0, 1] pixel space."""
    tagged = images.clone()
    tagged[..., :side, :side] = 1.0
    return tagged


class Releases:
    """Draws releases of ``cohort`` clients' updates, the target's batch with or without the property."""

    def __init__(self, config: PropertyConfig) -> None:
        if config.carriers > config.batch:
            raise GradleakError(f"carriers={config.carriers} exceeds batch={config.batch}; at most every image carries the tag")
        data = load_dataset(config.dataset)
        self.config, self.normalization = config, data.normalization
        self.model = models.build(config.model, data.shape, data.num_classes, seed=config.seed)
        self.params = dict(self.model.named_parameters())
        self.images, self.labels = data.images, data.labels
        self.stack = build_stack([s.strip() for s in config.defense.split("+")])
        if self.stack.at("step"):
            raise GradleakError("property inference attacks a client's update; step-stage defenses (dp-sgd) are not supported here, use dp-fedavg")
        self.generator = federated.noise_generator(config.seed)
        self.rng = np.random.default_rng(config.seed)
        half = len(data) // 2
        order = self.rng.permutation(len(data))
        self.pools = {"public": order[:half], "private": order[half:]}

    def _update(self, indices: np.ndarray, carriers: int) -> tuple[torch.Tensor, ...]:
        x = self.images[indices]
        if carriers:
            x = torch.cat([tag(x[:carriers], self.config.tag), x[carriers:]])
        return federated.batch_gradient(self.model, self.params, self.normalization.normalize(x), self.labels[indices])

    def draw(self, pool: str, has_property: bool) -> np.ndarray:
        """One release: the defended mean of the target's update and ``cohort - 1`` others'."""
        c, indices = self.config, self.pools[pool]
        uploads = []
        for k in range(c.cohort):
            batch = self.rng.choice(indices, size=c.batch, replace=False)
            update = self._update(batch, c.carriers if (k == 0 and has_property) else 0)
            for defense in self.stack.at("client"):
                update = defense.on_upload(update, ClientContext(k, c.batch, self.generator))
            uploads.append(update)
        released = tuple(torch.stack(parts).mean(0) for parts in zip(*uploads))
        for defense in self.stack.at("server"):
            released = defense.on_aggregate(released, c.cohort, self.generator)
        return features(released)

    def sample(self, pool: str, count: int) -> tuple[np.ndarray, np.ndarray]:
        has = np.arange(count) % 2 == 1
        return np.stack([self.draw(pool, bool(h)) for h in has]), has


def features(released: tuple[torch.Tensor, ...]) -> np.ndarray:
    """Median over rows of ``dL/dW_j / dL/db_j`` when the first layer is linear with a bias, else ``|update|``."""
    if len(released) > 1 and released[0].dim() == 2 and released[1].shape == released[0].shape[:1]:
        return (released[0] / released[1][:, None]).median(0).values.nan_to_num().numpy()
    return torch.cat([t.reshape(-1) for t in released]).abs().numpy()


def bootstrap_auc(labels: np.ndarray, scores: np.ndarray, rng: np.random.Generator, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the ROC AUC over the trials."""
    aucs = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(labels), len(labels))
        if labels[pick].min() != labels[pick].max():
            aucs.append(roc_auc_score(labels[pick], scores[pick]))
    tail = (1 - confidence) / 2
    return float(np.quantile(aucs, tail)), float(np.quantile(aucs, 1 - tail))


def property_inference(config: PropertyConfig = PropertyConfig()) -> PropertyResult:
    """Train the property classifier on shadow releases and score it on held-out target releases."""
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    releases = Releases(config)
    shadow_x, shadow_y = releases.sample("public", config.shadows)
    target_x, target_y = releases.sample("private", config.trials)
    forest = RandomForestClassifier(n_estimators=config.trees, random_state=config.seed, n_jobs=1)
    forest.fit(shadow_x, shadow_y)
    scores = forest.predict_proba(target_x)[:, 1]
    low, high = bootstrap_auc(target_y, scores, np.random.default_rng(config.seed))
    return PropertyResult(
        dataset=config.dataset,
        defense=" + ".join(releases.stack.names()) or "none",
        cohort=config.cohort,
        auc=float(roc_auc_score(target_y, scores)),
        auc_low=low,
        auc_high=high,
        confidence=0.95,
        trials=config.trials,
        shadows=config.shadows,
        seconds=time.perf_counter() - start,
    )
