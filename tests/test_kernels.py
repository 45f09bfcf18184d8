"""The elementwise C kernels of the compiled step (src/handgrad/_kernels.c, built into
handgrad._fused and called here through ctypes) against their definitions in NumPy: bit
for bit where the kernel performs the same operations in the same order (masks, column
sums, the squared norm, Adam and momentum as handgrad.optim, gathers), within a few ulp
where the exp and log are other implementations (the softmax). Random data with NaN,
±inf, ±0 and ties; sizes with vector tails, 0 and 1."""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from handgrad.optim import SGD, Adam

try:
    _fused = importlib.import_module("handgrad._fused")
    lib = ctypes.CDLL(_fused.__file__)
except (ImportError, OSError):  # built without a compiler: nothing to test
    lib = None

pytestmark = [
    pytest.mark.skipif(lib is None, reason="handgrad._fused is not built"),
    pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning"),  # inf − inf, inf · 0
]

DTYPES = [np.float32, np.float64]
SIZES = [0, 1, 7, 15, 16, 17, 33, 100, 1001]
P, N, I, D = ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int, ctypes.c_double


def kernel(name: str, dtype, restype=None, *args):
    """The C function ``name`` for ``dtype`` (``_f``/``_d``), typed."""
    func = getattr(lib, f"{name}_{'f' if dtype == np.float32 else 'd'}")
    func.restype, func.argtypes = restype, list(args)
    return func


def ptr(a: np.ndarray) -> int:
    assert a.flags.c_contiguous
    return a.ctypes.data


def data(rng, shape, dtype, specials: bool = True) -> np.ndarray:
    """Normal numbers with ties, and (``specials``) NaN, ±inf and ±0 in some places."""
    a = rng.standard_normal(shape).astype(dtype)
    flat = a.reshape(-1)
    if flat.size >= 4:
        flat[rng.integers(0, flat.size, max(1, flat.size // 10))] = 0.5  # ties
        flat[rng.integers(0, flat.size, max(1, flat.size // 20))] = -0.0
        flat[rng.integers(0, flat.size, max(1, flat.size // 20))] = 0.0
        if specials:
            for value in (np.nan, np.inf, -np.inf):
                flat[rng.integers(0, flat.size, max(1, flat.size // 50))] = value
    return a


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    """Equal bit for bit (so ±0 differ), NaN at the same places (any payload)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    uint = np.uint32 if got.dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(got[~nan].view(uint), want[~nan].view(uint))


def column_sums(dZ: np.ndarray) -> np.ndarray:
    """Each column summed over the rows in order (np.sum would sum pairwise)."""
    out = np.zeros(dZ.shape[1], dZ.dtype)
    for row in dZ:
        out = out + row
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "cols"), [(0, 5), (1, 1), (1, 17), (7, 10), (200, 100), (33, 33)])
def test_bias_then_relu_multiplies_by_the_mask(dtype, n, cols):
    """Z + b (b to every row), and with the ReLU (Z + b) ⊙ [Z + b > 0] in one pass."""
    rng = np.random.default_rng(n * 100 + cols)
    Z, b = data(rng, (n, cols), dtype), data(rng, cols, dtype)
    added = Z + b
    relu = added * (added > 0).astype(dtype)
    both = Z.copy()
    kernel("hg_add_bias", dtype, None, P, P, N, N)(ptr(Z), ptr(b), n, cols)
    assert_same(Z, added)
    kernel("hg_add_bias_relu", dtype, None, P, P, N, N)(ptr(both), ptr(b), n, cols)
    assert_same(both, relu)
    assert np.isnan(both).sum() == np.isnan(relu).sum()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "cols"), [(0, 5), (1, 1), (1, 17), (7, 10), (200, 100), (33, 33)])
def test_relu_grad_masks_in_place_and_sums_the_columns_in_row_order(dtype, n, cols):
    rng = np.random.default_rng(n * 100 + cols)
    dA, A = data(rng, (n, cols), dtype), data(rng, (n, cols), dtype)
    want = dA * (A > 0).astype(dtype)  # inf or NaN times 0: NaN, as NumPy's dA * D
    db = np.full(cols, 7, dtype)
    kernel("hg_relu_grad", dtype, None, P, P, N, N, P)(ptr(dA), ptr(A), n, cols, ptr(db))
    assert_same(dA, want)
    assert_same(db, column_sums(want))
    if n == 0:
        assert not db.any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "cols"), [(0, 3), (1, 1), (5, 16), (200, 10), (17, 257)])
def test_column_sums_are_the_sequential_sums(dtype, n, cols):
    rng = np.random.default_rng(cols)
    for specials in (False, True):
        dZ, out = data(rng, (n, cols), dtype, specials), np.full(cols, 7, dtype)
        kernel("hg_column_sums", dtype, None, P, N, N, P)(ptr(dZ), n, cols, ptr(out))
        assert_same(out, column_sums(dZ))
    # the sum in order, not pairwise: 1 + ε/2 + ε/2 … stays 1 in order
    tiny = np.finfo(dtype).eps / 2
    dZ = np.array([[1.0]] + [[tiny]] * 8, dtype)
    kernel("hg_column_sums", dtype, None, P, N, N, P)(ptr(dZ), 9, 1, ptr(out))
    assert out[0] == 1


def sqnorm(W: np.ndarray) -> float:
    """_fused.pyx's _sqnorm: 8 running double sums, the tail into the first."""
    acc = np.zeros(8)
    body = W.size - W.size % 8
    for k in range(0, body, 8):
        w = W[k : k + 8].astype(np.float64)
        acc = acc + w * w
    for k in range(body, W.size):
        w = float(W[k])
        acc[0] += w * w
    a = [float(x) for x in acc]
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [*SIZES, 7510])
def test_sqnorm_keeps_eight_running_sums(dtype, size):
    rng = np.random.default_rng(size)
    func = kernel("hg_sqnorm", dtype, D, P, N)
    W = (rng.standard_normal(size) * 10.0 ** rng.integers(-3, 4, size)).astype(dtype)
    assert func(ptr(W), size) == sqnorm(W)
    if size:
        W[size // 2] = np.inf
        assert func(ptr(W), size) == np.inf
        W[0] = np.nan
        assert np.isnan(func(ptr(W), size))


def first_argmax(row: np.ndarray) -> int:
    """The sequential scan of _fused.pyx: strictly greater, or the first NaN."""
    best, top = 0, row[0]
    if top == top:
        for j in range(1, len(row)):
            if row[j] > top or row[j] != row[j]:
                best, top = j, row[j]
                if row[j] != row[j]:
                    break
    return best


def softmax_xent(S, y, c):
    """The loop of _fused.pyx's _step, in NumPy in the dtype (NumPy's own exp, log)."""
    n, C = S.shape
    dtype = S.dtype.type
    labels = np.array([first_argmax(row) for row in S], np.int64).reshape(n)
    m = S[np.arange(n), labels]
    e = np.exp(S - m[:, None])
    total = np.zeros(n, S.dtype)
    for j in range(C):
        total = total + e[:, j]
    dS = e * (dtype(c) / total)[:, None]
    dS[np.arange(n), y] -= dtype(c)
    losses = np.log(total) - (S[np.arange(n), y] - m)
    return labels, dS, losses


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "C"), [(0, 10), (1, 1), (1, 10), (37, 3), (200, 10), (50, 33)])
@pytest.mark.parametrize("specials", [False, True])
def test_softmax_xent_is_the_loop_within_ulps(dtype, n, C, specials):
    rng = np.random.default_rng(n + C)
    S = (rng.standard_normal((n, C)) * 4).astype(dtype)
    S[rng.random((n, C)) < 0.2] = dtype(1.5)  # ties, some of them the maximum
    if n > 10 and specials:
        S[3, 2 % C] = np.nan
        S[4, :] = np.nan
        S[5, -1] = np.inf
        S[6, 0] = -np.inf
        S[7, :] = -0.0
        S[8, 0], S[8, -1] = -0.0, 0.0
        S[9, :] = dtype(80)  # exp(0) = 1 everywhere
    y = rng.integers(0, C, n).astype(np.int64)
    c = 1.0 / max(n, 1)
    dS, losses = np.full((n, C), 9, dtype), np.full(n, 9, dtype)
    labels = np.full(n, -1, np.int64)
    func = kernel("hg_softmax_xent", dtype, D, P, P, P, P, P, N, N, D)
    total = func(ptr(S), ptr(dS), ptr(losses), ptr(labels), ptr(y), n, C, c)

    want_labels, want_dS, want_losses = softmax_xent(S, y, c)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_array_equal(np.isnan(dS), np.isnan(want_dS))
    np.testing.assert_array_equal(np.isnan(losses), np.isnan(want_losses))
    eps = np.finfo(dtype).eps
    # exp within an ulp on either side, the total and the division a few roundings
    # more; the −c of the picked class can cancel, so that error is relative to c
    ok = np.isfinite(want_dS)
    assert_same(dS[~ok], want_dS[~ok])
    err = np.abs(dS[ok] - want_dS[ok])
    assert np.all(err <= 6 * eps * np.abs(want_dS[ok]) + 2 * eps * c), err.max()
    # loss = log(total) + |picked| (no cancellation): a few ulp, and the log of a total
    # a few ulp off (an absolute eps-sized change where total is near 1)
    ok = np.isfinite(want_losses)
    assert_same(losses[~ok], want_losses[~ok])
    err = np.abs(losses[ok] - want_losses[ok])
    assert np.all(err <= 4 * eps * np.abs(want_losses[ok]) + 4 * eps), err.max()
    # the sum of its own losses, in double, i ascending
    expect = 0.0
    for value in losses:
        expect += float(value)
    assert total == expect or (np.isnan(total) and np.isnan(expect))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_exp_within_an_ulp_of_the_correctly_rounded(dtype):
    # one row with its maximum 0 first: dS_j = round(e_j · s) for j ≥ 1, one scale s
    rng = np.random.default_rng(1)
    x = -np.concatenate([rng.random(4000) * 60, rng.random(1000) * 1e-3, [0, 1e-30]])
    S = np.concatenate([[0.0], x]).astype(dtype)[None, :]
    C = S.shape[1]
    func = kernel("hg_softmax_xent", dtype, D, P, P, P, P, P, N, N, D)
    dS, losses = np.empty_like(S), np.empty(1, dtype)
    labels, y = np.empty(1, np.int64), np.zeros(1, np.int64)
    func(ptr(S), ptr(dS), ptr(losses), ptr(labels), ptr(y), 1, C, 1.0)
    assert labels[0] == 0
    exact = np.exp(S[0, 1:].astype(np.longdouble))  # extended precision: the true exp
    ratio = dS[0, 1:].astype(np.longdouble) / exact
    scale = dtype(np.median(ratio))  # s = fl(c / total), a number of the dtype
    e = dS[0, 1:].astype(np.longdouble) / np.longdouble(scale)
    ulp = np.spacing(exact.astype(dtype)).astype(np.longdouble)
    # 1 ulp (0.97 measured in double, 1.01 in float), and at most one more from the
    # product's rounding seen through the scale
    assert np.max(np.abs(e - exact) / ulp) <= 2.1


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_exp_alone_within_an_ulp_where_the_total_is_one(dtype):
    # every other term below half an ulp of 1: total = 1 exactly, and with c = 1 the
    # gradient of each other class is its exp itself
    low = {np.float32: (-100.0, -17.5), np.float64: (-740.0, -37.5)}[dtype]
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(*low, 20000), [-np.inf, low[1]]])
    S = np.concatenate([[0.0], x]).astype(dtype)[None, :]
    C = S.shape[1]
    func = kernel("hg_softmax_xent", dtype, D, P, P, P, P, P, N, N, D)
    dS, losses = np.empty_like(S), np.empty(1, dtype)
    labels, y = np.empty(1, np.int64), np.zeros(1, np.int64)
    func(ptr(S), ptr(dS), ptr(losses), ptr(labels), ptr(y), 1, C, 1.0)
    assert dS[0, 0] == 0 and losses[0] == 0  # e_0 − c = 1 − 1, log 1 − 0
    exact = np.exp(S[0, 1:].astype(np.longdouble))
    rounded = exact.astype(dtype)
    normal = rounded >= np.finfo(dtype).smallest_normal
    ulp = np.spacing(rounded[normal]).astype(np.longdouble)
    assert np.max(np.abs(dS[0, 1:][normal] - exact[normal]) / ulp) <= 1.05
    # subnormal results within one subnormal step, −inf to 0
    tiny = np.finfo(dtype).smallest_subnormal
    assert np.all(np.abs(dS[0, 1:][~normal] - rounded[~normal]) <= tiny)
    assert dS[0, -2] == 0


def adam_reference(theta, g, steps, dtype, **kw):
    opt = Adam(**kw)
    params = {"W": theta.copy()}
    for _ in range(steps):
        opt.update(params, {"W": g})
    return params["W"], opt.m["W"], opt.v["W"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [*SIZES, 7510])
def test_adam_is_optim_adam_bit_for_bit(dtype, size):
    rng = np.random.default_rng(size)
    theta, g = data(rng, size, dtype, specials=False), data(rng, size, dtype)
    kw = {"learning_rate_init": 0.01, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-7}
    want = adam_reference(theta, g, 3, dtype, **kw)
    m, v = np.zeros(size, dtype), np.zeros(size, dtype)
    func = kernel("hg_adam", dtype, None, P, P, P, P, N, D, D, D, D)
    b1, b2 = kw["beta_1"], kw["beta_2"]
    for t in (1, 2, 3):
        lr_t = float(kw["learning_rate_init"] * np.sqrt(1 - b2**t) / (1 - b1**t))
        func(ptr(theta), ptr(g), ptr(m), ptr(v), size, lr_t, b1, b2, kw["epsilon"])
    for got, expect in zip((theta, m, v), want, strict=True):
        assert_same(got, expect)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("size", SIZES)
def test_momentum_is_optim_sgd_bit_for_bit(dtype, nesterov, size):
    rng = np.random.default_rng(size)
    theta, g = data(rng, size, dtype, specials=False), data(rng, size, dtype)
    opt = SGD(0.05, momentum=0.9, nesterov=nesterov)
    params, v = {"W": theta.copy()}, np.zeros(size, dtype)
    func = kernel("hg_momentum", dtype, None, P, P, P, N, D, D, I)
    for _ in range(3):
        opt.update(params, {"W": g})
        func(ptr(theta), ptr(g), ptr(v), size, 0.05, 0.9, int(nesterov))
    assert_same(theta, params["W"])
    assert_same(v, opt.velocity["W"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "D_"), [(0, 4), (1, 1), (200, 64), (9, 33)])
def test_gather_rows_copies(dtype, n, D_):
    """Rows at positions, directly or through row numbers, with their targets or not."""
    rng = np.random.default_rng(n)
    X, targets = data(rng, (50, D_), dtype), rng.integers(0, 9, 50)
    positions = rng.integers(0, 40, n)
    rows = rng.permutation(50)[:40]
    gather = kernel("hg_gather_rows", dtype, None, P, P, P, P, P, P, N, N)
    for through, want in ((None, positions), (rows, rows[positions])):
        dst, t = np.full((n, D_), 3, dtype), np.full(n, -1)
        at = None if through is None else ptr(through)
        gather(ptr(dst), ptr(t), ptr(X), ptr(targets), ptr(positions), at, n, D_)
        assert_same(dst, X[want])
        np.testing.assert_array_equal(t, targets[want])
        dst = np.full((n, D_), 3, dtype)
        gather(ptr(dst), None, ptr(X), None, ptr(positions), at, n, D_)  # X's rows alone
        assert_same(dst, X[want])


def test_the_kernels_benchmark_prints_its_table(capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "kernels.py"
    spec = importlib.util.spec_from_file_location("_bench_kernels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--rounds", "1", "--reps", "1"])
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "| dtype | workload | kernel | built µs |"
    assert len(rows) == 2 + 2 * 2 * 9  # 2 dtypes × 2 workloads × 9 kernels
    assert "| float64 | MNIST-like | adam 203530 |" in rows[-3]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_add_scaled_is_the_workspaces_penalty_gradient(dtype, size):
    """dW += W λ, as the fast engine's ``dW += np.multiply(W, reg)`` (λ in the dtype)."""
    rng = np.random.default_rng(size)
    dW, W = data(rng, size, dtype), data(rng, size, dtype)
    want = dW + np.multiply(W, 0.3)
    kernel("hg_add_scaled", dtype, None, P, P, N, D)(ptr(dW), ptr(W), size, 0.3)
    assert_same(dW, want)
