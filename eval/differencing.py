"""Join/leave differencing measured: does the difference of two releases tell whether the joiner
holds a rare class, and how close is it to the joiner's upload.

A trial (:func:`rare_class_trial`): a freshly initialised MLP (near-uniform softmax), seven clients of ``batch`` examples of the common
classes, and a joiner whose batch holds one example of the rare class in half of the trials (a coin
flip, so chance is 50%). Round 1 holds the seven, round 2 the seven and the joiner
(:func:`gradleak.session.run_session`); the server differences the releases and says "holds the
rare class" when its bias-gradient entry is negative (:func:`gradleak.attacks.differencing.held_classes`),
or, reading only the models, when one server step with the difference raises the rare class's mean
log-probability on public examples of it (:func:`recognition_gain`: "the update makes the model
recognise the rare class").
``fresh``: the seven train on new examples in round 2 instead of repeating their data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call

from gradleak.attacks.differencing import client_view, held_classes
from gradleak.data import load_dataset
from gradleak.defenses import build_stack
from gradleak.eval.audit_bounds import clopper_pearson
from gradleak.federated import Client
from gradleak.models import build
from gradleak.session import run_session
from gradleak.threat import ServerView

RARE_CLASS = 0  # digits: the class only the joiner may hold
REFERENCES = 32  # public examples of the rare class the attacker checks the model's recognition on
SERVER_LR = 0.01  # the step the recognition test applies the difference with (small: first order)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Trials:
    """``correct`` of ``trials`` rare-class guesses, with an exact Clopper-Pearson interval."""

    correct: int
    trials: int
    chance: float = 0.5

    @property
    def rate(self) -> float:
        return self.correct / self.trials

    @property
    def interval(self) -> tuple[float, float]:
        return clopper_pearson(self.correct, self.trials, 1 - CONFIDENCE)

    def format(self) -> str:
        low, high = self.interval
        return f"{self.correct}/{self.trials} ({100 * self.rate:.0f}%, 95% CI {100 * low:.0f}–{100 * high:.0f}%)"


def recognition_gain(view: ServerView, references: torch.Tensor, cls: int, lr: float = SERVER_LR) -> float:
    """How much one step ``w - lr * update`` raises the mean log-probability of ``cls`` on ``references``."""
    params = view.parameters
    names = [n for n, p in view.model.named_parameters() if p.requires_grad]
    stepped = {**params, **{n: params[n] - lr * u for n, u in zip(names, view.update)}}
    x = view.normalization.normalize(references)
    with torch.no_grad():
        before, after = (functional_call(view.model, p, (x,)).log_softmax(1)[:, cls].mean() for p in (params, stepped))
    return float(after - before)


def rare_class_trial(seed: int, defenses: tuple[str, ...] = (), fresh: bool = False, cohort: int = 8,
                     batch: int = 4, dataset: str = "digits", model: str = "mlp") -> tuple[bool, bool, bool]:
    """One trial: whether the joiner held the rare class, whether the server said so from the
    difference's label signal, and from the model's recognition of public rare examples."""
    data = load_dataset(dataset)
    generator = torch.Generator().manual_seed(seed)
    rare = torch.nonzero(data.labels == RARE_CLASS).flatten()
    common = torch.nonzero(data.labels != RARE_CLASS).flatten()
    common = common[torch.randperm(len(common), generator=generator)]
    holds = bool(torch.rand((), generator=generator) < 0.5)
    others = [common[k * batch : (k + 1) * batch] for k in range(1, cohort)]
    later = [common[k * batch : (k + 1) * batch] for k in range(cohort, 2 * cohort - 1)] if fresh else others
    mine = common[:batch].clone()
    pick = int(torch.randint(len(rare), (), generator=generator))
    if holds:
        mine[0] = rare[pick]
    references = data.get(torch.cat([rare[:pick], rare[pick + 1 :]])[:REFERENCES].tolist())[0]
    def clients(picks: list[torch.Tensor]) -> list[Client]:
        return [Client(k + 1, *data.get(p.tolist())) for k, p in enumerate(picks)]

    joiner = Client(0, *data.get(mine.tolist()))
    net = build(model, data.shape, data.num_classes, seed=seed)
    session = run_session(net, data.normalization, [clients(others), [*clients(later), joiner]], data.num_classes,
                          defenses=build_stack(defenses), noise_seed=seed)
    view = client_view(session.view)
    return holds, bool(held_classes(view)[RARE_CLASS]), recognition_gain(view, references, RARE_CLASS) > 0


def rare_class_trials(trials: int, defenses: tuple[str, ...] = (), fresh: bool = False,
                      first_seed: int = 0) -> tuple[Trials, Trials]:
    """How often the server is right about the rare class over ``trials`` seeded trials: by the
    label signal, and by the model's recognition."""
    outcomes = [rare_class_trial(first_seed + t, defenses, fresh) for t in range(trials)]
    return (Trials(sum(held == said for held, said, _ in outcomes), trials),
            Trials(sum(held == said for held, _, said in outcomes), trials))
