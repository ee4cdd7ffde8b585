"""The compact batched L-BFGS takes torch.optim.LBFGS's steps, for many problems at once."""

import torch

from gradleak.attacks.lbfgs import BatchedLBFGS


def _problem(seed: int = 0, n: int = 30):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=generator, dtype=torch.float64)
    a = a @ a.T / n + 0.1 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, generator=generator, dtype=torch.float64)
    return lambda x: 0.5 * x @ a @ x - b @ x + 0.1 * (x**4).sum(), torch.randn(n, generator=generator, dtype=torch.float64)


def _grad(f, z):
    z = z.clone().requires_grad_(True)
    return torch.autograd.grad(sum(f(row) for row in z), z)[0]


def test_same_steps_as_torch_lbfgs_with_a_short_history():
    f, x0 = _problem()
    x = x0.clone().requires_grad_(True)
    reference = torch.optim.LBFGS([x], lr=0.5, max_iter=1, history_size=5)

    def closure():
        reference.zero_grad()
        loss = f(x)
        loss.backward()
        return loss

    mine = BatchedLBFGS(x0[None], history=5, lr=0.5)  # the history wraps around several times
    for _ in range(20):
        reference.step(closure)
        mine.tell(_grad(f, mine.z))
        assert torch.allclose(mine.z[0], x.detach(), atol=1e-10)


def test_problems_are_independent_and_restartable():
    f, x0 = _problem(1)
    together = BatchedLBFGS(torch.stack([x0, 2 * x0, x0]), history=4)
    alone = BatchedLBFGS(x0[None], history=4)
    for step in range(12):
        if step == 6:  # restarting problem 1 must not disturb problems 0 and 2
            together.restart(torch.tensor([1]), torch.zeros(1, len(x0), dtype=x0.dtype))
        together.tell(_grad(f, together.z))
        alone.tell(_grad(f, alone.z))
    assert torch.allclose(together.z[0], alone.z[0], atol=1e-12)
    assert torch.equal(together.z[0], together.z[2])
    minimum = BatchedLBFGS(x0[None], history=10)
    for _ in range(200):
        minimum.tell(_grad(f, minimum.z))
    assert float(_grad(f, minimum.z).abs().max()) < 1e-8


def test_a_narrowed_batch_goes_on_as_before():
    f, x0 = _problem(1)
    wide = BatchedLBFGS(torch.stack([x0, 2 * x0, -x0]), history=4)
    alone = BatchedLBFGS((-x0)[None], history=4)
    for step in range(12):
        if step == 6:  # drop problems 0 and 1 mid-search: problem 2 keeps its history
            wide.keep(torch.tensor([2]))
        wide.tell(_grad(f, wide.z))
        alone.tell(_grad(f, alone.z))
    assert wide.z.shape == alone.z.shape
    torch.testing.assert_close(wide.z, alone.z, rtol=0, atol=1e-12)


def test_compiled_steps_equal_the_eager_ones_with_restarts():
    f, x0 = _problem(2)
    eager = BatchedLBFGS(torch.stack([x0, -x0]), history=4, max_step=0.3)
    compiled = BatchedLBFGS(torch.stack([x0, -x0]), history=4, max_step=0.3, compile=True)
    for step in range(15):
        if step == 7:
            for optimizer in (eager, compiled):
                optimizer.restart(torch.tensor([0]), torch.zeros(1, len(x0), dtype=x0.dtype))
        eager.tell(_grad(f, eager.z))
        compiled.tell(_grad(f, compiled.z))
        torch.testing.assert_close(compiled.z, eager.z, rtol=1e-10, atol=1e-12)


def test_float32_pairs_steer_a_float64_search_to_its_float64_minimum():
    f, x0 = _problem(3)
    exact = BatchedLBFGS(x0[None], history=10)
    stored32 = BatchedLBFGS(x0[None], history=10, storage=torch.float32)
    assert stored32.z.dtype == torch.float64 and stored32._SY_rows.dtype == torch.float32
    for step in range(200):
        exact.tell(_grad(f, exact.z))
        stored32.tell(_grad(f, stored32.z))
        if step < 5:  # the same steps up to float32 rounding of the pairs
            torch.testing.assert_close(stored32.z, exact.z, rtol=1e-5, atol=1e-5)
    assert float(_grad(f, stored32.z).abs().max()) < 1e-8  # float64 accuracy, not float32's
    torch.testing.assert_close(stored32.z, exact.z, rtol=0, atol=1e-8)
