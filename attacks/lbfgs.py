"""L-BFGS over flat vectors for many independent problems at once, in compact form.

Gradient matching on small networks spends about half of each ``torch.optim.LBFGS`` step in
the optimiser itself: a two-loop recursion of ~4 small tensor operations per stored pair, in
Python, over each parameter tensor. Here the unknowns of each problem are one flat vector and
the inverse-Hessian product uses the compact representation of Byrd, Nocedal and Schnabel,
"Representations of quasi-Newton matrices and their use in limited memory methods"
(Math. Programming 63, 1994, eq. 3.1):

    H g = gamma g + [S  gamma Y] [[R^-T (D + gamma Y^T Y) R^-1, -R^-T], [-R^-1, 0]] [S^T g; gamma Y^T g]

with S, Y the last ``m`` steps and gradient changes, R the upper triangle of S^T Y, D its
diagonal and gamma = s^T y / y^T y. S^T Y and Y^T Y are kept up to date one row and column per
step, so a step costs a few batched matrix-vector products and two m x m triangular solves,
whatever ``m`` is, for P problems together.

The iteration is ``torch.optim.LBFGS``'s without line search (DLG's setting): a fixed step
``lr`` along the quasi-Newton direction, the very first step scaled by ``min(1, 1/|g|_1)``,
and a pair skipped when its curvature ``y^T s`` is not positive (relative to ``|s| |y|``, where
torch uses an absolute 1e-10; see ``CURVATURE_EPS``). One gradient evaluation
per step; a problem can be restarted at a new point without disturbing the others.

``max_step`` optionally caps each step's root-mean-square entry. The second step is the first
to use curvature, and from a tiny first step the estimate gamma = s^T y / y^T y can be huge: in
gradient matching that step (RMS 6.6 per pixel on a normalised image) saturates the network's
sigmoids, the gradient vanishes and the search freezes for good.

``storage`` keeps S and Y in another precision than the unknowns: float32 pairs for a float64
search halve the memory each step reads twice (the step is memory-bound: for one LeNet-Zhu
problem 2.1 ms in float64, 1.2 ms with float32 pairs, compiled, one thread). The pairs only
shape the direction; the iterate, the gradient, the curvature test and the m x m algebra stay in
the unknowns' precision, so the search still converges as far as its gradients allow.

``compile=True`` runs :meth:`BatchedLBFGS.tell` through ``torch.compile``: its ~60 small
operators cost more to dispatch than to compute (3.0 ms a step for one LeNet-Zhu problem with
100 pairs in float64 on one CPU thread, 1.9 ms compiled), and with a compiled matching loss
(:mod:`gradleak.attacks.functional`) the step is half of each iteration. One compiled function
serves every instance.
"""

from __future__ import annotations

import functools

import torch

from gradleak.attacks.functional import compile_quietly

# torch.optim.LBFGS skips a pair when y^T s <= 1e-10, an absolute threshold that assumes a loss
# of order one. Gradient matching ends at losses of 1e-6 with steps of 1e-6 per entry, where every
# pair falls below it and the search freezes with stale curvature; the test here is relative.
CURVATURE_EPS = 1e-8  # skip the pair when y^T s <= 1e-8 |s| |y| (no usable positive curvature)


class BatchedLBFGS:
    """Ask-tell L-BFGS: read :attr:`z`, evaluate loss gradients there, call :meth:`tell`.

    ``z`` is (P, n): P independent problems of n unknowns each.
    """

    def __init__(
        self,
        z: torch.Tensor,
        history: int = 100,
        lr: float = 1.0,
        max_step: float | None = None,
        compile: bool = False,
        storage: torch.dtype | None = None,
    ) -> None:
        if z.ndim != 2:
            raise ValueError(f"z must be (problems, unknowns), not {tuple(z.shape)}")
        problems, n = z.shape
        self.lr = lr
        self.max_step = max_step
        self.history = history
        self.compile = compile
        self.z = z.detach().clone()
        options = dict(dtype=z.dtype, device=z.device)
        # Rows 0..m-1 hold the steps s_i, rows m..2m-1 the gradient changes y_i, in ring slots;
        # one buffer so that S^T v and Y^T v are a single batched product.
        self._SY_rows = torch.zeros(problems, 2 * history, n, dtype=storage or z.dtype, device=z.device)
        # [p, i, j] = s_i . y_j and y_i . y_j, by ring slot; unused slots stay zero.
        self._SY = torch.zeros(problems, history, history, **options)
        self._YY = torch.zeros(problems, history, history, **options)
        self._count = torch.zeros(problems, dtype=torch.long, device=z.device)
        self._head = torch.zeros(problems, dtype=torch.long, device=z.device)
        self._gamma = torch.ones(problems, **options)
        self._started = torch.zeros(problems, dtype=torch.bool, device=z.device)
        self._previous_grad = torch.zeros_like(self.z)
        self._step = torch.zeros_like(self.z)  # the step s = t d taken last
        self._rows = torch.arange(problems, device=z.device)
        self._positions = torch.arange(history, device=z.device)

    def restart(self, index: torch.Tensor, z: torch.Tensor) -> None:
        """Start problems ``index`` afresh at ``z`` (len(index), n): no history, first-step scaling."""
        self.z[index] = z.to(self.z)
        self._count[index] = 0
        self._head[index] = 0
        self._gamma[index] = 1.0
        self._started[index] = False
        self._SY_rows[index] = 0
        self._SY[index] = 0
        self._YY[index] = 0

    def keep(self, index: torch.Tensor) -> None:
        """Keep only problems ``index``, in that order, with their histories: the batch narrows."""
        for name in ("z", "_SY_rows", "_SY", "_YY", "_count", "_head", "_gamma", "_started", "_previous_grad", "_step"):
            setattr(self, name, getattr(self, name)[index])
        self._rows = torch.arange(len(index), device=self.z.device)

    def tell(self, grad: torch.Tensor) -> torch.Tensor:
        """Take one step for every problem from the gradient at :attr:`z`; returns the new ``z``."""
        return (_compiled_tell() if self.compile else BatchedLBFGS._tell)(self, grad.detach())

    def _tell(self, grad: torch.Tensor) -> torch.Tensor:
        m = self.history
        # Store the pair (s, y) of the step just evaluated where its curvature allows, then
        # take every product with the history in one pass over it: s, y and g against all pairs.
        s, y = self._step, grad - self._previous_grad
        ys = (y * s).sum(dim=1)
        accept = self._started & (ys > CURVATURE_EPS * s.norm(dim=1) * y.norm(dim=1))
        rows, slot = self._rows, self._head
        keep = accept[:, None]
        stored = self._SY_rows.dtype
        self._SY_rows[rows, slot] = torch.where(keep, s.to(stored), self._SY_rows[rows, slot])
        self._SY_rows[rows, m + slot] = torch.where(keep, y.to(stored), self._SY_rows[rows, m + slot])
        # (P, 3, n) @ (P, n, 2m): on the CPU this orientation is ~4x faster than (P, 2m, n) @ (P, n, 3).
        products = torch.bmm(torch.stack([s, y, grad], dim=1).to(stored), self._SY_rows.transpose(1, 2)).to(grad.dtype)
        with_s, with_y, with_g = products.unbind(dim=1)
        self._SY[rows, slot] = torch.where(keep, with_s[:, m:], self._SY[rows, slot])  # s . y_j
        self._SY[rows, :, slot] = torch.where(keep, with_y[:, :m], self._SY[rows, :, slot])  # s_i . y
        self._YY[rows, slot] = torch.where(keep, with_y[:, m:], self._YY[rows, slot])
        self._YY[rows, :, slot] = torch.where(keep, with_y[:, m:], self._YY[rows, :, slot])
        yy = with_y[rows, m + slot]
        self._gamma = torch.where(accept, ys / yy.clamp_min(1e-30), self._gamma)
        self._head = torch.where(accept, (slot + 1) % m, slot)
        self._count = torch.where(accept, (self._count + 1).clamp(max=m), self._count)

        direction = -self._inverse_hessian_times(grad, with_g[:, :m], with_g[:, m:])
        scale = torch.where(self._started, 1.0, (1.0 / grad.abs().sum(dim=1).clamp_min(1e-30)).clamp(max=1.0))
        step = (self.lr * scale)[:, None] * direction
        if self.max_step is not None:
            rms = step.square().mean(dim=1, keepdim=True).sqrt()
            step = step * (self.max_step / rms.clamp_min(1e-30)).clamp(max=1.0)
        self._step = step
        self.z = self.z + step
        self._previous_grad = grad
        self._started.fill_(True)
        return self.z

    def _inverse_hessian_times(self, g: torch.Tensor, s_dot_g: torch.Tensor, y_dot_g: torch.Tensor) -> torch.Tensor:
        m = self.history
        # Chronological order, oldest pair first: R must be upper triangular in time.
        order = (self._head[:, None] - self._count[:, None] + self._positions[None, :]) % m
        unused = self._positions[None, :] >= self._count[:, None]
        rows, i, j = self._rows[:, None, None], order[:, :, None], order[:, None, :]
        SY, YY = self._SY[rows, i, j], self._YY[rows, i, j]
        a, b = s_dot_g.gather(1, order)[:, :, None], y_dot_g.gather(1, order)[:, :, None]
        # Unused slots are all zeros; R_ii = 1 there makes them solve to zero coefficients.
        R = torch.triu(SY) + torch.diag_embed(unused.to(g.dtype))
        gamma = self._gamma[:, None, None]
        q = torch.linalg.solve_triangular(R, a, upper=True)
        rhs = torch.diagonal(SY, dim1=1, dim2=2)[:, :, None] * q + gamma * (torch.bmm(YY, q) - b)
        p = torch.linalg.solve_triangular(R.transpose(1, 2), rhs, upper=False)
        # H g = gamma g + S p - gamma Y q, with p and q put back into ring slots.
        coefficients = torch.zeros(len(g), 2 * m, dtype=g.dtype, device=g.device)
        coefficients.scatter_(1, order, p[..., 0])
        coefficients.scatter_(1, m + order, -(gamma * q)[..., 0])
        return gamma[:, 0] * g + torch.bmm(coefficients[:, None, :].to(self._SY_rows.dtype), self._SY_rows)[:, 0].to(g.dtype)


@functools.cache
def _compiled_tell():
    return compile_quietly(BatchedLBFGS._tell)
