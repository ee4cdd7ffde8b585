"""DP audits: run a defense's real release many times on neighbouring data, and lower-bound its epsilon.

The game (Jagielski et al. 2020; Nasr et al. 2021): neighbouring datasets differ by one canary,
an example (``dp-sgd``: one DP-SGD step on a client's data with or without it) or a client (every
other stack: one round's released aggregate with or without the canary client). The release is
produced by the defense's own code (clipping, noise, secure aggregation), so a bug in it is what
the audit sees. The attacker projects each release on the canary's clipped direction and runs
the likelihood-ratio membership test (:mod:`gradleak.attacks.membership`); its outcomes give
``epsilon_lower`` with Clopper-Pearson confidence (:mod:`gradleak.eval.audit_bounds`), beside the
accountant's epsilon. A correct mechanism never has ``epsilon_lower`` above it except with
probability 1 - confidence; a broken one (``planted_bug=`` in the DP specs) shows above it.

Without the canary client its slot in the round uploads a zero update (the client is there, its
data is not), so the cohort, and with it the divisor and distributed DP's count of noise shares,
is the same in both worlds.

Canaries: an example whose label is changed (a large gradient, clipped to C) for ``dp-sgd``; a
client whose update is a random direction of norm ``canary_norm`` for the client level (Andrew et
al., "One-shot Empirical Privacy Estimation for Federated Learning", ICLR 2024). The one-run audit
(Steinke et al. 2023) puts ``canaries`` such clients in one round, each with probability 1/2; it
runs where the round can hold them in plain aggregation (DP-FedAvg, no defense).

The base examples of a DP-SGD step are the whole lot (sample rate 1), so dividing by the lot size
qB is dividing by a count that differs by one between the worlds; the canary's gradient is nearly
orthogonal to the others' sum, so that division moves the statistic by far less than the noise.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Annotated, Literal

import numpy as np
import torch

from gradleak import federated, models
from gradleak.attacks.membership import LikelihoodRatioTest, membership_metrics
from gradleak.data import load_dataset
from gradleak.defenses import ClientContext, DefenseStack, Update, build_stack
from gradleak.defenses.dp_sgd import clipped_sum, per_example_gradients
from gradleak.errors import GradleakError
from gradleak.eval.audit_bounds import OneRunBound, one_run_audit, two_world_bound
from gradleak.spec import Range

Level = Literal["auto", "example", "client"]


@dataclass(frozen=True)
class AuditConfig:
    dataset: str = "digits"  # embedded, no download; the releases need real gradients, not their accuracy
    model: str = "mlp:hidden=16"  # small (16,570 parameters): each release is a DP-SGD step or a round of it
    level: Level = "auto"  # example (one client's update) or client (the round's aggregate); auto: example for dp-sgd
    examples: Annotated[int, Range(1, 1024)] = 32  # example level: the client's examples besides the canary
    cohort: Annotated[int, Range(0, 256)] = 8  # client level: clients in the round besides the canary
    trials: Annotated[int, Range(8, 100_000)] = 1000  # releases per world; half choose the threshold (Jagielski et al. 2020)
    canaries: Annotated[int, Range(0, 100_000)] = 1000  # m of the one-run audit (Steinke et al. 2023, Fig. 1); 0: skip it
    guesses: Annotated[int, Range(2, 100_000)] = 200  # r of the one-run audit, half "in" and half "out"
    canary_norm: Annotated[float, Range(0, None, low_open=True)] = 10.0  # canary client's update norm, past any clip
    confidence: Annotated[float, Range(0.5, 1, high_open=True)] = 0.95  # of every bound
    delta: Annotated[float, Range(0, 1, high_open=True)] = 1e-5  # for stacks without DP; DP stacks use their own
    seed: int = 0  # data, canary, model and noise; the noise is then reproducible, not private


@dataclass(frozen=True)
class AuditResult:
    """One audit: the empirical bound beside the accountant's, and the attack behind it."""

    defense: str
    level: str
    epsilon_lower: float
    epsilon_accountant: float
    delta: float
    confidence: float
    trials: int
    tpr: float
    fpr: float
    epsilon_cap: float  # the most these trials can show: a perfect attack's bound
    auc: float
    advantage: float
    one_run_epsilon_lower: float | None
    one_run_canaries: int
    one_run_guesses: int
    one_run_correct: int
    seconds: float
    noise_seeded: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def _flat(update: Update) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in update]).double()


def _unflat(vector: torch.Tensor, like: Update) -> Update:
    sizes = [t.numel() for t in like]
    return tuple(v.view_as(t).to(t.dtype) for v, t in zip(vector.split(sizes), like))


def accountant_epsilon(stack: DefenseStack) -> tuple[float, float | None]:
    """(epsilon, delta) the stack's DP mechanism claims; (inf, None) without one."""
    dp = [d for d in stack if d.epsilon() is not None]
    if len(dp) > 1:
        raise GradleakError(f"an audit takes one DP mechanism, not {', '.join(d.name for d in dp)}")
    return (dp[0].epsilon(), dp[0].config.delta) if dp else (math.inf, None)


class ExampleGame:
    """One DP-SGD step (or a plain batch gradient) on a client's examples, with or without the canary."""

    def __init__(self, stack: DefenseStack, config: AuditConfig) -> None:
        data = load_dataset(config.dataset)
        x, y = data.get(range(config.examples + 1))
        self.model = models.build(config.model, data.shape, data.num_classes, seed=config.seed)
        self.params = dict(self.model.named_parameters())
        # The canary is the next example with its label moved: wrong labels have the largest gradients.
        y[-1] = (y[-1] + 1) % data.num_classes
        self.x, self.y = data.normalization.normalize(x), y
        self.step = next(iter(stack.at("step")), None)
        clip = self.step.config.clip if self.step is not None else math.inf
        canary = clipped_sum(per_example_gradients(self.model, self.params, self.x[-1:], self.y[-1:]), clip)
        names = federated.trainable_names(self.model)
        g = _flat(tuple(canary[n] for n in names))
        self.direction = g / g.norm()

    def statistics(self, included: np.ndarray, generator: torch.Generator) -> np.ndarray:
        out = np.empty(len(included))
        for i, member in enumerate(included):
            n = len(self.x) if member else len(self.x) - 1
            x, y = self.x[:n], self.y[:n]
            if self.step is not None:
                release = self.step.step_gradient(self.model, self.params, x, y, generator)
            else:
                release = federated.batch_gradient(self.model, self.params, x, y)
            out[i] = float(_flat(release) @ self.direction)
        return out


class ClientGame:
    """One round's released aggregate (client, aggregation and server stages), with or without canary clients."""

    def __init__(self, stack: DefenseStack, config: AuditConfig) -> None:
        if stack.at("step"):
            raise GradleakError("a step-stage defense (dp-sgd) is audited at the example level; use level=example")
        data = load_dataset(config.dataset)
        self.model = models.build(config.model, data.shape, data.num_classes, seed=config.seed)
        params = dict(self.model.named_parameters())
        per_client, pool = 4, max(4 * config.cohort, 1)
        x, y = data.get(range(per_client * pool))
        x = data.normalization.normalize(x)
        # Other clients' updates: real gradients of the digits model; each round draws its cohort from them.
        self.pool = [
            federated.batch_gradient(self.model, params, x[k * per_client : (k + 1) * per_client], y[k * per_client : (k + 1) * per_client])
            for k in range(pool)
        ]
        self.stack, self.config = stack, config
        self.aggregator = federated.sized_aggregator(stack)
        self.rng = np.random.default_rng(config.seed)
        self.dim = sum(t.numel() for t in self.pool[0])

    def canary_directions(self, count: int) -> torch.Tensor:
        """Unit random directions (Andrew et al. 2024's canary clients): nearly orthogonal in high dimension."""
        g = torch.from_numpy(self.rng.standard_normal((count, self.dim)))
        return g / g.norm(dim=1, keepdim=True)

    def release(self, extra: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """The aggregate released after a round of ``cohort`` drawn clients plus the ``extra`` canary updates
        (a zero vector: the canary's slot without its data)."""
        cohort = self.rng.choice(len(self.pool), size=self.config.cohort, replace=False)
        updates = [self.pool[k] for k in cohort] + [_unflat(v * self.config.canary_norm, self.pool[0]) for v in extra]
        uploads = []
        for k, update in enumerate(updates):
            for defense in self.stack.at("client"):
                update = defense.on_upload(update, ClientContext(k, 1, generator))
            uploads.append(update)
        aggregation = self.aggregator.aggregate(uploads, [1] * len(uploads), generator)
        contributors = len(aggregation.contributors) if aggregation.contributors is not None else len(uploads)
        released = aggregation.aggregate
        for defense in self.stack.at("server"):
            released = defense.on_aggregate(released, contributors, generator)
        return _flat(released)

    def statistics(self, included: np.ndarray, generator: torch.Generator) -> np.ndarray:
        direction = self.canary_directions(1)[0]
        absent = torch.zeros_like(direction)
        return np.array([float(self.release([direction if member else absent], generator) @ direction) for member in included])

    def one_run(self, config: AuditConfig, delta: float, generator: torch.Generator) -> OneRunBound:
        """Steinke et al. 2023, Alg. 1: ``canaries`` canary clients, each in the one round with probability 1/2."""
        directions = self.canary_directions(config.canaries)
        included = self.rng.random(config.canaries) < 0.5
        release = self.release([directions[i] for i in np.flatnonzero(included)], generator)
        scores = (directions @ release).numpy()
        return one_run_audit(scores, included, config.guesses, delta, config.confidence)


def audit(defense: str, config: AuditConfig = AuditConfig()) -> AuditResult:
    """Audit the stack ``defense`` (specs joined by ``+``): empirical epsilon beside the accountant's."""
    start = time.perf_counter()
    stack = build_stack([s.strip() for s in defense.split("+")])
    epsilon, delta = accountant_epsilon(stack)
    delta = config.delta if delta is None else delta
    level = config.level if config.level != "auto" else ("example" if stack.at("step") else "client")
    torch.manual_seed(config.seed)
    game = ExampleGame(stack, config) if level == "example" else ClientGame(stack, config)
    generator = federated.noise_generator(config.seed)
    worlds = np.random.default_rng(config.seed + 1)
    shadow = config.trials // 2
    included = np.concatenate([np.ones(config.trials, bool), np.zeros(config.trials, bool)])
    order = worlds.permutation(len(included))  # interleave the worlds, so no drift separates them
    stats = np.empty(len(included))
    stats[order] = game.statistics(included[order], generator)
    s_in, s_out = stats[: config.trials], stats[config.trials :]
    # Shadow half: fit the likelihood-ratio test; both halves are then scored by it.
    test = LikelihoodRatioTest.fit(s_in[:shadow], s_out[:shadow])
    scores_in, scores_out = test.score(s_in), test.score(s_out)
    bound = two_world_bound(scores_in, scores_out, delta, config.confidence)
    held = membership_metrics(scores_in[shadow:], scores_out[shadow:])
    one = None
    if level == "client" and config.canaries and _one_run_fits(stack):
        one = game.one_run(config, delta, generator)
    return AuditResult(
        defense=" + ".join(stack.names()) or "none",
        level=level,
        epsilon_lower=bound.epsilon_lower,
        epsilon_accountant=epsilon,
        delta=delta,
        confidence=config.confidence,
        trials=2 * config.trials,
        tpr=bound.tpr,
        fpr=bound.fpr,
        epsilon_cap=bound.epsilon_cap,
        auc=held.auc,
        advantage=held.advantage,
        one_run_epsilon_lower=one.epsilon_lower if one else None,
        one_run_canaries=one.canaries if one else 0,
        one_run_guesses=one.guesses if one else 0,
        one_run_correct=one.correct if one else 0,
        seconds=time.perf_counter() - start,
    )


def _one_run_fits(stack: DefenseStack) -> bool:
    """One round with hundreds of canary clients: plain aggregation only (secure aggregation is
    quadratic in the cohort), and no noise split over a declared cohort (distributed DP)."""
    return stack.aggregator.name == "plain" and not any(d.name == "dp-distributed" for d in stack)
