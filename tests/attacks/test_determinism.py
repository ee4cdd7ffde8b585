"""A seeded attack gives the same numbers whatever the load, and library code leaves torch's
process-wide numeric settings (threads, the oneDNN backend) to the process's owner."""

import threading

import pytest
import torch

from gradleak.attacks import build_attack
from gradleak.attacks.many import reconstruct_many
from gradleak.compute import Compute
from gradleak.scenario import Scenario, build_round


def _spin(stop: threading.Event) -> None:
    a = torch.randn(192, 192)
    while not stop.is_set():
        a = (a @ a).tanh()  # torch releases the GIL here: a real competitor for the cores


def test_the_same_seeded_attack_gives_identical_numbers_on_a_busy_machine(make_round):
    view = make_round(dataset="faces", index=0).view
    spec = "dlg:iterations=120,restarts=1,abandon_stalled=false"
    quiet = build_attack(spec).reconstruct(view)
    stop = threading.Event()
    busy = [threading.Thread(target=_spin, args=(stop,)) for _ in range(2)]
    for thread in busy:
        thread.start()
    try:
        loaded = build_attack(spec).reconstruct(view)
    finally:
        stop.set()
        for thread in busy:
            thread.join()
    assert torch.equal(quiet.images, loaded.images)
    assert quiet.info["loss"] == loaded.info["loss"] and quiet.history == loaded.history


def test_library_calls_neither_change_nor_choose_threads_or_backend(monkeypatch):
    """Every forward pass inside an attack runs under the caller's settings, which are unchanged after."""
    # their own models, since a hook is added below; R-GAP on an MLP, whose analytic solve is quick
    view = build_round(Scenario(dataset="faces", index=1)).view
    mlp = build_round(Scenario(dataset="faces", index=1, model="mlp:activation=sigmoid")).view
    caller = Compute(threads=2, onednn=not torch.backends.mkldnn.enabled)
    seen: set[tuple[int, bool]] = set()
    def note(*_):
        seen.add((torch.get_num_threads(), bool(torch.backends.mkldnn.enabled)))

    handles = [v.model.register_forward_hook(note) for v in (view, mlp)]
    set_calls: list[int] = []
    real_set = torch.set_num_threads
    try:
        with caller.applied():
            monkeypatch.setattr(torch, "set_num_threads", lambda n: (set_calls.append(n), real_set(n)))
            for spec, target in (("dlg:iterations=20,restarts=1", view), ("ig:iterations=3", view),
                                 ("rgap:iterations=5", mlp)):
                build_attack(spec).reconstruct(target)
            reconstruct_many([view, view], build_attack("idlg:iterations=20,restarts=1").config)
            monkeypatch.undo()
            assert Compute.current() == caller
    finally:
        for handle in handles:
            handle.remove()
    assert set_calls == []
    assert seen == {(caller.threads, caller.onednn)}


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_compute_refuses_a_thread_count_below_one(threads):
    from gradleak.errors import GradleakError

    with pytest.raises(GradleakError, match="threads must be a whole number of at least 1"):
        Compute(threads=threads)


def test_cuda_searches_turn_tf32_off_and_restore_the_callers_flags():
    """The one process-wide flag pair the engine touches (checked without a GPU: the flags are plain globals)."""
    from types import SimpleNamespace

    from gradleak.attacks.matching import full_precision

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with full_precision(SimpleNamespace(device=torch.device("cuda"))):
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (False, False)
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
    with full_precision(SimpleNamespace(device=torch.device("cpu"))):
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
