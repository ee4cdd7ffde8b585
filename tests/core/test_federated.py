"""Clients compute exactly the update the attacker models; the server's view keeps the truth out."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from gradleak.defenses import DefenseStack
from gradleak.errors import GradleakError
from gradleak.federated import Client, batch_gradient, local_update, minibatches, run_round, split_clients
from gradleak.models import build
from gradleak.threat import LocalTraining, Normalization, ServerView, Truth

NORM = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def make(seed=0, n=4, model="lenet-zhu"):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)
    return build(model, (3, 32, 32), 10, seed=seed), images, labels


def test_fedsgd_update_is_the_gradient_of_mean_cross_entropy_not_half_of_it():
    model, images, labels = make()
    update = local_update(model, NORM.normalize(images), labels, LocalTraining())
    model.zero_grad()
    F.cross_entropy(model(NORM.normalize(images)), labels).backward()
    for u, p in zip(update, model.parameters()):
        assert torch.allclose(u, p.grad, atol=1e-6)


def test_fedavg_delta_unrolls_sgd_steps_over_consecutive_minibatches():
    model, images, labels = make(n=4)
    x = NORM.normalize(images)
    local = LocalTraining("fedavg", local_steps=3, learning_rate=0.05, batch_size=2)
    assert minibatches(4, local) == [slice(0, 2), slice(2, 4), slice(0, 2)]
    delta = local_update(model, x, labels, local)
    reference = build("lenet-zhu", (3, 32, 32), 10, seed=0)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05)
    for piece in [slice(0, 2), slice(2, 4), slice(0, 2)]:
        optimizer.zero_grad()
        F.cross_entropy(reference(x[piece]), labels[piece]).backward()
        optimizer.step()
    for d, after, before in zip(delta, reference.parameters(), model.parameters()):
        assert torch.allclose(d, after.detach() - before.detach(), atol=1e-5)


def test_batch_gradient_is_differentiable_in_the_input_for_attackers():
    model, images, labels = make(n=1)
    x = NORM.normalize(images).requires_grad_(True)
    params = dict(model.named_parameters())
    grads = batch_gradient(model, params, x, labels, create_graph=True)
    (sum(g.square().sum() for g in grads)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_round_under_plain_aggregation_shows_the_victims_upload_and_keeps_truth_apart():
    model, images, labels = make(n=6, model="convnet:width=4")
    running_mean = model.body[1].running_mean.clone()
    clients = split_clients(images, labels, 3)
    outcome = run_round(model, NORM, clients, 10, victim=1)
    view, truth = outcome.view, outcome.truth
    expected = clients[1].upload(model, NORM, LocalTraining(), DefenseStack(), torch.Generator())
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(view.update, expected))
    assert torch.equal(truth.images, images[2:4]) and truth.client_ids == (1,)
    assert view.num_examples == 2 and view.cohort_size == 3 and not view.aggregate
    # the global model is untouched by clients' training, and the view carries no data
    assert torch.equal(model.body[1].running_mean, running_mean)
    assert all(p.grad is None for p in view.model.parameters())
    assert not any(isinstance(getattr(view, f.name), Truth) for f in dataclasses.fields(view))
    assert view.known_labels is None
    weighted = sum(torch.stack([u[0] for u in [c.upload(model, NORM, LocalTraining(), DefenseStack(), torch.Generator()) for c in clients]]))
    assert torch.allclose(outcome.released[0], weighted / 3, atol=1e-6)


def test_known_labels_are_side_information_only_when_granted():
    model, images, labels = make(n=2)
    view = run_round(model, NORM, split_clients(images, labels, 1), 10, known_labels=True).view
    assert torch.equal(view.known_labels, labels)


def test_malformed_views_are_rejected_clearly():
    model, images, labels = make(n=1)
    good = run_round(model, NORM, split_clients(images, labels, 1), 10).view
    fields = {f.name: getattr(good, f.name) for f in dataclasses.fields(good)}
    with pytest.raises(GradleakError, match="update has 7 tensors but the model has 8"):
        ServerView(**{**fields, "update": good.update[:-1]})
    with pytest.raises(GradleakError, match=r"update tensor 0 has shape \(3,\)"):
        ServerView(**{**fields, "update": (torch.zeros(3), *good.update[1:])})
    nan = good.update[0].clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(GradleakError, match="NaN"):
        ServerView(**{**fields, "update": (nan, *good.update[1:])})
    with pytest.raises(GradleakError, match="known label 12 is out of range for 10 classes"):
        ServerView(**{**fields, "known_labels": torch.tensor([12])})


def test_bad_local_training_and_cohorts():
    with pytest.raises(GradleakError, match="FedSGD uploads one gradient"):
        LocalTraining("fedsgd", local_steps=5)
    with pytest.raises(GradleakError, match="cannot split 2 examples over 3 clients"):
        split_clients(torch.rand(2, 1, 4, 4), torch.zeros(2), 3)
    with pytest.raises(GradleakError, match="as many labels as images"):
        Client(0, torch.rand(2, 1, 4, 4), torch.zeros(1))
