"""``secagg:bind_model``: clients commit to the digest of the model they received, so a server that
sends different clients different models (Pasquini et al., CCS 2022) cannot complete the round."""

import dataclasses
import hashlib

import numpy as np
import pytest
import torch
from torch import nn

from gradleak.defenses import build_stack
from gradleak.defenses.secagg.client import SecAggClient
from gradleak.defenses.secagg.graph import plan
from gradleak.defenses.secagg.messages import KeyBroadcast, ProtocolAbort, ProtocolError
from gradleak.defenses.secagg.protocol import Dropouts, run_secagg
from gradleak.errors import GradleakError
from gradleak.federated import Client, run_round
from gradleak.servers import build_server
from gradleak.threat import Normalization

NORM = Normalization((0.5,), (0.25,))
REAL, DEAD = hashlib.sha256(b"real model").digest(), hashlib.sha256(b"dead model").digest()
INCONSISTENT = "clients received different models: the server is inconsistent"


def tiny_model(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def cohort(clients: int, seed: int = 0) -> list[Client]:
    generator = torch.Generator().manual_seed(seed)
    return [Client(k, torch.rand(2, 1, 4, 4, generator=generator), torch.randint(0, 3, (2,), generator=generator))
            for k in range(clients)]


def test_binding_leaves_an_honest_round_unchanged_but_for_32_bytes_per_advert():
    model, clients = tiny_model(), cohort(5)
    bound = run_round(model, NORM, clients, 3, defenses=build_stack(["secagg:seed=3"]), noise_seed=0)
    unbound = run_round(model, NORM, clients, 3, defenses=build_stack(["secagg:seed=3,bind_model=false"]), noise_seed=0)
    assert bound.cost["model_bound"] and not unbound.cost["model_bound"]
    for got, want in zip(bound.view.update, unbound.view.update):
        assert torch.equal(got, want)
    # Complete graph of 5, passive: each client sends one digest and receives five in the key broadcast.
    assert bound.cost["client_bytes_sent"] - unbound.cost["client_bytes_sent"] == 32
    assert bound.cost["client_bytes_received"] - unbound.cost["client_bytes_received"] == 5 * 32


def test_the_inconsistent_server_is_stopped_in_20_of_20_trials():
    aborted = 0
    for trial in range(20):
        n = 3 + trial % 6
        server = build_server(f"inconsistent:target={(7 * trial) % n}")
        with pytest.raises(GradleakError, match=INCONSISTENT):
            run_round(tiny_model(trial), NORM, cohort(n, seed=trial), 3,
                      defenses=build_stack([f"secagg:seed={trial}"]), server=server)
        aborted += 1
    assert aborted == 20


def test_without_binding_the_inconsistent_server_still_reads_the_target():
    model, clients = tiny_model(), cohort(4)
    round_ = run_round(model, NORM, clients, 3, defenses=build_stack(["secagg:seed=1,bind_model=false"]),
                       server=build_server("inconsistent:target=2"))
    alone = clients[2].upload(model, NORM, round_.view.local, build_stack([]), torch.Generator())
    assert float((round_.view.update[0] - alone[0]).abs().max()) < 1e-3


def inconsistent_inputs(n: int, target: int, dim: int):
    """``target`` holds the real model and an input, the rest a dead model and a zero input:
    unmasked, the sum is the target's input."""
    rng = np.random.default_rng(0)
    inputs = [np.zeros(dim, np.uint32) for _ in range(n)]
    inputs[target] = rng.integers(0, 2**32, dim, dtype=np.uint64).astype(np.uint32)
    digests = [REAL if u == target else DEAD for u in range(n)]
    return inputs, digests


def forge(requests: list, digests: list[bytes]) -> list:
    """The server shows every client that its neighbours committed to the client's own digest."""
    return [KeyBroadcast(r.recipient, {v: dataclasses.replace(a, model_digest=digests[r.recipient])
                                       for v, a in r.keys.items()}) for r in requests]


def test_a_server_relaying_forged_digests_gets_masks_that_do_not_cancel(session):
    n, target = 5, 1
    s = session(n, dim=64, active=False)
    inputs, digests = inconsistent_inputs(n, target, dim=64)
    s.inputs = inputs
    s.clients = [SecAggClient(u, lambda u=u: inputs[u], model_digest=digests[u]) for u in range(n)]
    s.step()  # AdvertiseKeys: the honest relay would now abort every client
    s.requests = forge(s.requests, digests)
    total = s.finish()
    assert float(np.mean(total == inputs[target])) < 0.1  # the target's masks with the others stay in


def test_a_forged_digest_fails_the_signature_check_in_active_mode(session):
    n, target = 5, 0
    s = session(n, dim=16, active=True)
    inputs, digests = inconsistent_inputs(n, target, dim=16)
    s.clients = [SecAggClient(u, lambda u=u: inputs[u], s.identities[u], s.pki, model_digest=digests[u]) for u in range(n)]
    s.step()
    with pytest.raises(ProtocolAbort, match="not signed by client"):
        for request in forge(s.requests, digests):
            s.clients[request.recipient].handle(request)


def test_dropped_clients_masks_are_removed_with_their_neighbours_committed_digest():
    n, dim = 6, 32
    rng = np.random.default_rng(1)
    inputs = [rng.integers(0, 2**32, dim, dtype=np.uint64).astype(np.uint32) for _ in range(n)]
    dropouts = Dropouts({"mask": frozenset({2})})
    result = run_secagg(lambda u: inputs[u], plan(n), dim, 32, dropouts, model_digests=[REAL] * n)
    want = np.zeros(dim, np.uint32)
    for u in result.survivors:
        want += inputs[u]
    assert result.survivors == frozenset(range(n)) - {2}
    assert np.array_equal(result.total, want)


def test_a_digest_of_the_wrong_length_is_refused():
    with pytest.raises(ProtocolError, match="32 bytes"):
        SecAggClient(0, lambda: np.zeros(4, np.uint32), model_digest=b"short")
    with pytest.raises(GradleakError, match="3 model digests for 4 clients"):
        run_secagg(lambda u: np.zeros(4, np.uint32), plan(4), 4, model_digests=[REAL] * 3)
