"""What a compiled kernel would buy: the training step with its elementwise work fused.

An experiment, not handgrad: the two-layer ReLU/softmax step of ``Workspace.sgd_step``
with everything between the matrix products done by three numba kernels (12 calls a
step instead of about 30), timed against the GEMM floors and handgrad's NumPy step,
all on gathered shuffled batches, interleaved round by round as in ``epoch.py``.
Needs numba (``pip install numba``); it is not a dependency of handgrad.

    python benchmarks/fused_step.py --rounds 9
    python benchmarks/fused_step.py --quick
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from epoch import (
    BATCH,
    WORKLOADS,
    epoch_flops,
    gemm_floor,
    gemm_floor_gathered,
    interleaved,
    make_data,
    print_table,
    summarise,
    write_results,
)

from handgrad import MLP
from handgrad.workspace import Workspace, gemm_

try:
    import numba
except ImportError:  # pragma: no cover - optional
    numba = None

LEARNING_RATE, REG = 1e-3, 1e-4 / BATCH


def _kernels():
    njit = numba.njit(cache=True, boundscheck=False)

    @njit
    def relu_forward_(Z, b):
        """``A1 = max(Z1 + b1, 0)`` over Z1 = X W1 (n, H) in place (NaN stays NaN)."""
        n, h = Z.shape
        for i in range(n):
            for j in range(h):
                v = Z[i, j] + b[j]
                Z[i, j] = v if v > 0 else 0.0 * v

    @njit
    def softmax_head_(S, b, y, c, dS, lr, db):
        """``S += b2``; ``dS = (P − Y) c``; ``b2 −= η Σ_rows dS``; returns
        ``(c Σ_i ℓ_i, right rows)`` with ``ℓ_i = log Σ_k e^{S_ik − m_i} − (S_iy − m_i)``."""
        n, C = S.shape
        loss, right = 0.0, 0
        db[:] = 0.0
        for i in range(n):
            m, best = S[i, 0] + b[0], 0
            for k in range(C):
                S[i, k] += b[k]
                if S[i, k] > m:
                    m, best = S[i, k], k
            total = 0.0
            for k in range(C):
                dS[i, k] = np.exp(S[i, k] - m)
                total += dS[i, k]
            loss += np.log(total) - (S[i, y[i]] - m)
            for k in range(C):
                dS[i, k] *= c / total
            dS[i, y[i]] -= c
            for k in range(C):
                db[k] += dS[i, k]
            right += best == y[i]
        for k in range(C):
            b[k] -= lr * db[k]
        return loss * c, right

    @njit
    def relu_backward_(dA, A, b, lr, db):
        """``dZ1 = dA1 ⊙ [A1 > 0]`` in place (``[A1 > 0] = [Z1 > 0]``);
        ``b1 −= η Σ_rows dZ1``."""
        n, h = dA.shape
        db[:] = 0.0
        for i in range(n):
            for j in range(h):
                if not A[i, j] > 0:
                    dA[i, j] = 0.0
                db[j] += dA[i, j]
        for j in range(h):
            b[j] -= lr * db[j]

    return relu_forward_, softmax_head_, relu_backward_


class FusedStep:
    """Plain SGD on a two-layer ReLU/softmax MLP: 5 products, 3 kernels, 2 dots."""

    def __init__(self, model: MLP, rows: int) -> None:
        _, H, C = model.layer_sizes
        dt = model.dtype
        self.A, self.dA = np.empty((rows, H), dt), np.empty((rows, H), dt)
        self.S, self.dS = np.empty((rows, C), dt), np.empty((rows, C), dt)
        self.db1, self.db2 = np.empty(H, dt), np.empty(C, dt)
        self.relu_forward_, self.softmax_head_, self.relu_backward_ = _kernels()

    def sgd_step(self, p, X, y, reg, lr):
        n = X.shape[0]
        A, dA, S, dS = self.A[:n], self.dA[:n], self.S[:n], self.dS[:n]
        W1, b1, W2, b2 = p["W1"], p["b1"], p["W2"], p["b2"]
        penalty = 0.5 * reg * (float(np.vdot(W1, W1)) + float(np.vdot(W2, W2)))
        gemm_(X, W1, A, 1.0, 0.0)
        self.relu_forward_(A, b1)
        gemm_(A, W2, S, 1.0, 0.0)
        loss, right = self.softmax_head_(S, b2, y, 1.0 / n, dS, lr, self.db2)
        np.matmul(dS, W2.T, out=dA)  # dA1 = dS W2ᵀ with W2 before its update
        decay = 1.0 - lr * reg
        gemm_(A, dS, W2, -lr, decay, trans_a=True)  # W2 ← (1 − ηλ) W2 − η A1ᵀ dS
        self.relu_backward_(dA, A, b1, lr, self.db1)
        gemm_(X, dA, W1, -lr, decay, trans_a=True)  # W1 ← (1 − ηλ) W1 − η Xᵀ dZ1
        return loss + penalty, right


def _workspace(model: MLP) -> Workspace:
    """handgrad's buffers for ``model`` on batches of ``BATCH`` rows."""
    return Workspace(
        model.layer_sizes, BATCH, activation=model.activation, head=model.head, dtype=model.dtype
    )


def _steps(make_step, X, y, H, C):
    """One epoch of gathered shuffled batches through ``make_step(model)``'s step."""
    N, D = X.shape
    model = MLP(D, (H,), C, seed=0, dtype=X.dtype)
    ws = _workspace(model)
    step = make_step(model, ws)
    rng, order = np.random.default_rng(0), np.arange(N)

    def run() -> None:
        rng.shuffle(order)
        for start in range(0, N, BATCH):
            Xb, Tb, _ = ws.gather(X, y, None, order[start : start + BATCH])
            step(model.params, Xb, Tb)

    return run


def numpy_steps(X, y, H, C):
    """handgrad's own step (``Workspace.sgd_step``)."""

    def make_step(model, ws):
        return lambda p, Xb, Tb: ws.sgd_step(p, Xb, Tb, REG, None, LEARNING_RATE)

    return _steps(make_step, X, y, H, C)


def fused_steps(X, y, H, C):
    """The numba-fused step."""

    def make_step(model, ws):
        fused = FusedStep(model, BATCH)
        return lambda p, Xb, Tb: fused.sgd_step(p, Xb, Tb, REG, LEARNING_RATE)

    return _steps(make_step, X, y, H, C)


def check_agreement(dtype, steps: int = 3) -> float:
    """Largest weight difference between the fused and the NumPy step after ``steps``."""
    X, y = make_data(BATCH, 20, 4, dtype)
    a, b = (MLP(20, (16,), 4, seed=0, dtype=dtype) for _ in range(2))
    ws, fused = _workspace(a), FusedStep(b, BATCH)
    for _ in range(steps):
        la, _ = ws.sgd_step(a.params, X, y, REG, None, 0.1)
        lb, _ = fused.sgd_step(b.params, X, y, REG, 0.1)
        assert np.isclose(la, lb, rtol=1e-5), (la, lb)
    return max(float(np.abs(a.params[k] - b.params[k]).max()) for k in a.params)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", nargs="+", choices=["mnist", "cifar"], default=["mnist"])
    p.add_argument("--dtype", nargs="+", choices=["float32", "float64"], default=["float32"])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if numba is None:
        raise SystemExit("fused_step.py needs numba: pip install numba")
    workloads, rounds = (["quick"], 2) if args.quick else (args.workload, args.rounds)
    results: dict = {"numba": numba.__version__, "agreement": {}, "epoch": {}}
    for dtype in map(np.dtype, args.dtype):
        results["agreement"][dtype.name] = diff = check_agreement(dtype)
        print(f"fused vs NumPy step, {dtype.name}: weights agree to {diff:.1e}")
        for workload in workloads:
            N, D, H, C = WORKLOADS[workload]
            X, y = make_data(N, D, C, dtype)
            runs = {
                "GEMM floor": gemm_floor(X, y, H, C),
                "floor, gathered batches": gemm_floor_gathered(X, y, H, C),
                "handgrad NumPy steps": numpy_steps(X, y, H, C),
                "numba-fused steps": fused_steps(X, y, H, C),
            }
            floors = dict.fromkeys(runs, ("GEMM floor", "floor, gathered batches"))
            rows = summarise(
                interleaved(runs, rounds, pause=0.0 if args.quick else 0.2),
                floors,
                epoch_flops(N, D, H, C),
            )
            print_table(f"steps of one epoch, {workload}-like, {dtype.name}, {rounds} rounds", rows)
            results["epoch"][f"{workload}/{dtype.name}"] = rows
    write_results(results, args.out, "fused")
    return results


if __name__ == "__main__":
    main()
