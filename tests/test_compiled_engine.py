"""The compiled engine (handgrad.training.compiled): the fast engine's steps, without
Python in the inner loop — held to the fast engine step by step and to scikit-learn's
trajectories, and left for the fast engine where it is missing or the fit is not one it
covers."""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.neural_network import MLPClassifier as SkMLP

from handgrad import MLP, MLPClassifier
from handgrad.estimator import ReportedLoss
from handgrad.optim import SGD, Adam
from handgrad.training import TrainingConfig, compiled, engine_for
from handgrad.training.data import TrainingData
from handgrad.training.engines import FastEngine, FusedSGD
from handgrad.training.sources import GatheredBatches
from handgrad.training.steps import step_through

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
built = pytest.mark.skipif(
    not compiled.available(), reason="the compiled extension (handgrad._fused) is not built"
)

OPTIMIZERS = {
    "sgd": lambda: SGD(0.05),
    "momentum": lambda: SGD(0.05, momentum=0.9),
    "nesterov": lambda: SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: Adam(0.01),
}


def _pair(optimizer: str, hidden: tuple[int, ...], dtype, rows: int = 32):
    """A compiled engine and a fast one, on two copies of the same network."""
    engines = []
    for want_compiled in (True, False):
        model = MLP(6, hidden, 4, seed=0, dtype=dtype)
        config = TrainingConfig(reg=0.3, report=ReportedLoss("softmax"))
        engine = engine_for(model, OPTIMIZERS[optimizer](), config, rows)
        if not want_compiled:
            fast = FusedSGD if optimizer == "sgd" else FastEngine
            engine = fast(model, engine.optimizer, config, engine.workspace)
        engines.append(engine)
    return engines


@built
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("hidden", [(9,), (9, 7)])
@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_each_step_is_the_fast_engines(optimizer, hidden, dtype, rtol):
    ours, fast = _pair(optimizer, hidden, dtype)
    assert type(ours) is compiled.CompiledEngine
    rng = np.random.default_rng(1)
    X = rng.standard_normal((90, 6)).astype(dtype)
    y = rng.integers(0, 4, 90)
    for step in range(8):
        idx = rng.permutation(90)[: 32 if step % 3 else 17]  # a short last batch too
        results = []
        for engine in (ours, fast):
            Xb, Tb, wb = engine.workspace.gather(X, y, None, idx)
            results.append(engine.step(Xb, Tb, wb, len(idx)))
        (loss, right), (fast_loss, fast_right) = results
        assert right == fast_right
        assert 0 <= right <= len(idx)
        assert_allclose(loss, fast_loss, rtol=rtol)
        for name, value in fast.model.params.items():
            assert_allclose(ours.model.params[name], value, rtol=rtol, atol=rtol * 1e-3)
    assert_allclose(ours._net.penalty, fast.workspace.penalty, rtol=rtol)
    # the optimizer's own state arrays, so that a saved state resumes on any engine
    arrays, scalars = ours.optimizer.state()
    fast_arrays, fast_scalars = fast.optimizer.state()
    assert scalars == fast_scalars
    assert sorted(arrays) == sorted(fast_arrays)
    for name, value in fast_arrays.items():
        assert_allclose(arrays[name], value, rtol=rtol, atol=rtol * 1e-3)


@built
def test_scipys_blas_gives_the_same_steps():
    """Where NumPy's cblas is not found, the products go to SciPy's (column-major)."""
    ours, fast = _pair("adam", (9, 7), np.float64)
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((40, 6)), rng.integers(0, 4, 40)
    compiled._fused.use_cblas(0, 0)
    try:
        for engine in (ours, fast):
            for start in (0, 20):
                Xb, Tb, wb = engine.workspace.gather(X, y, None, np.arange(start, start + 20))
                engine.step(Xb, Tb, wb, 20)
    finally:
        compiled._use_numpys_blas()
    for name, value in fast.model.params.items():
        assert_allclose(ours.model.params[name], value, rtol=1e-12, atol=1e-15)


@built
def test_the_reported_loss_is_the_fast_engines_from_the_same_row_losses():
    ours, fast = _pair("adam", (9,), np.float64)
    rng = np.random.default_rng(2)
    X = 30 * rng.standard_normal((32, 6))  # confident rows: scikit-learn's clip applies
    y = rng.integers(0, 4, 32)
    Xb, Tb, _ = ours.workspace.gather(X, y, None, np.arange(32))
    loss, _ = ours.step(Xb, Tb, None, 32)
    Xf, Tf, _ = fast.workspace.gather(X, y, None, np.arange(32))
    fast_loss, _ = fast.step(Xf, Tf, None, 32)
    assert_allclose(ours._losses[:32], fast.workspace.row_losses, rtol=1e-12)
    assert_allclose(loss, fast_loss, rtol=1e-12)
    exact = float(ours._losses[:32].mean()) + ours._net.penalty
    assert loss != pytest.approx(exact, rel=1e-6)  # the clip did change it


def _both_from_same_start(X, y, **params):
    """Ours and scikit-learn's from the same W0 (as tests/test_estimator.py)."""
    common = dict(shuffle=False, random_state=0, warm_start=True, max_iter=1, **params)
    ours = MLPClassifier(**{**common, "learning_rate_init": 1e-300})
    theirs = SkMLP(**common)
    ours.fit(X, y)
    theirs.fit(X, y)
    theirs.coefs_ = [W.copy() for W in ours.coefs_]
    theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
    return ours, theirs


@built
@pytest.mark.parametrize(
    "params",
    [
        dict(solver="sgd", momentum=0.0),
        dict(solver="sgd", momentum=0.9, nesterovs_momentum=True),
        dict(solver="sgd", momentum=0.5, nesterovs_momentum=False),
        dict(solver="adam"),
    ],
)
def test_classifier_with_it_follows_scikit_learn_step_for_step(blobs, params, monkeypatch):
    taken = []  # whether each epoch was the compiled one, in one call
    monkeypatch.setattr(
        compiled.CompiledEngine,
        "_takes_all",
        _recording(compiled.CompiledEngine._takes_all, taken),
    )
    X, y = blobs
    ours, theirs = _both_from_same_start(
        X, y, hidden_layer_sizes=(7, 5), alpha=0.3, batch_size=32, **params
    )
    for est in (ours, theirs):
        est.set_params(learning_rate_init=0.05, max_iter=6).fit(X, y)
    assert len(taken) == 6 + 1 and all(taken)  # 6 epochs, after the first fit's one
    for a, b in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert_allclose(ours.loss_curve_[1:], theirs.loss_curve_[1:], rtol=1e-9)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_


def _recording(method, results):
    def wrapped(self, *args, **kwargs):
        results.append(method(self, *args, **kwargs))
        return results[-1]

    return wrapped


def test_without_the_extension_the_fast_engines_are_chosen(monkeypatch):
    monkeypatch.setattr(compiled, "_fused", None)
    assert not compiled.available()
    for optimizer, kind in [("sgd", FusedSGD), ("adam", FastEngine)]:
        model = MLP(6, (9,), 4, seed=0)
        engine = engine_for(model, OPTIMIZERS[optimizer](), TrainingConfig(), 32)
        assert type(engine) is kind
    blobs_X = np.random.default_rng(0).standard_normal((60, 4))
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3).fit(blobs_X, np.arange(60) % 3)
    assert clf.n_iter_ == 3


@pytest.mark.parametrize(
    ("kwargs", "config", "expected"),
    [
        (dict(activation="tanh"), {}, FastEngine),
        (dict(head="sigmoid"), {}, FastEngine),
        ({}, dict(engine="reference"), None),
    ],
)
def test_fits_it_does_not_cover_keep_todays_engines(kwargs, config, expected):
    model = MLP(6, (9,), 4, seed=0, **kwargs)
    engine = engine_for(model, Adam(0.01), TrainingConfig(**config), 32)
    assert type(engine) is not compiled.CompiledEngine
    if expected is not None:
        assert type(engine) is expected


@built
def test_large_layers_take_it_with_every_optimizer():
    """MNIST-like layers too: with the elementwise work vectorised and an epoch a call,
    the compiled step is faster than the fast engine's fused NumPy step there as well."""
    large = MLP(784, (128,), 10, seed=0)
    for optimizer in (SGD(0.1), SGD(0.1, momentum=0.9), Adam(0.1)):
        engine = engine_for(large, optimizer, TrainingConfig(), 32)
        assert type(engine) is compiled.CompiledEngine


@built
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_batch_it_cannot_take_is_the_fast_engines_step(optimizer):
    ours, fast = _pair(optimizer, (9,), np.float64)
    rng = np.random.default_rng(3)
    X = sp.random(40, 6, density=0.5, format="csr", random_state=3)
    y = rng.integers(0, 4, 40)
    idx = np.arange(32)
    results = []
    for engine in (ours, fast):
        Xb, Tb, wb = engine.workspace.gather(X, y, None, idx)
        assert sp.issparse(Xb)
        results.append(engine.step(Xb, Tb, wb, 32))
    assert results[0] == results[1]
    for name, value in fast.model.params.items():
        assert_allclose(ours.model.params[name], value, rtol=0, atol=0)


@built
def test_the_benchmark_runs_on_tiny_sizes(capsys):
    """benchmarks/compiled.py (this engine against today's), so that it cannot rot."""
    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(benchmarks))  # it imports epoch.py beside it
    try:
        spec = importlib.util.spec_from_file_location("_bench_compiled", benchmarks / "compiled.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        results = module.main(["--quick", "--no-sklearn"])
    finally:
        sys.path.remove(str(benchmarks))
    assert sorted(results) == sorted(
        [f"{w} {d} (2 epochs)" for w in ("digits", "table") for d in ("float32", "float64")]
        + ["numba_first_call_s"]
    )
    assert all(set(v) == {"compiled", "numpy"} for k, v in results.items() if "epochs" in k)
    assert compiled.available()  # the benchmark put the extension back
    assert "speed-up" in capsys.readouterr().out


@built
@pytest.mark.parametrize("where", ["params", "state"])
def test_arrays_laid_out_otherwise_take_the_numpy_route(where):
    """A Fortran-ordered weight (assigned by a user) or optimizer state (loaded from a
    file) is not read as if C-ordered: that step or update is NumPy's."""
    ours, fast = _pair("adam", (9,), np.float64)
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((40, 6)), rng.integers(0, 4, 40)
    for step in range(3):
        for engine in (ours, fast):
            if step == 1:
                store = engine.model.params if where == "params" else engine.optimizer.m
                store["W1"] = np.asfortranarray(store["W1"])
            rows = np.arange(20) + 20 * (step % 2)
            Xb, Tb, wb = engine.workspace.gather(X, y, None, rows)
            engine.step(Xb, Tb, wb, len(Tb))
    assert not ours.model.params["W1"].flags.c_contiguous or where == "state"
    assert ours.optimizer.t == fast.optimizer.t == 3
    for name, value in fast.model.params.items():
        assert_allclose(ours.model.params[name], value, rtol=1e-12, atol=1e-15)


def _epoch_pair(optimizer: str, hidden, dtype, *, rows=None, batch_size=32, N=90, seed=6):
    """Two compiled engines on copies of one network, and a source for each over the
    same data (``rows`` of it training)."""
    ours, other = _pair(optimizer, hidden, dtype)
    other = engine_for(other.model, OPTIMIZERS[optimizer](), other.config, 32)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 6)).astype(dtype)
    y = rng.integers(0, 4, N)
    sources = []
    for engine in (ours, other):
        data = TrainingData.of(engine.model, X, y, rows=rows)
        sources.append(GatheredBatches(data, batch_size, engine.workspace))
    return (ours, other), sources


@built
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("hidden", [(9,), (9, 7)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows", [None, "some"])
def test_an_epoch_in_one_call_is_its_steps_one_by_one(optimizer, hidden, dtype, rows):
    """The same steps, bit for bit: the rows gathered in C, the reported loss clipped
    there, Adam's step count, a short last batch, and a step limit."""
    some = np.random.default_rng(0).permutation(90)[:77] if rows == "some" else None
    (ours, other), (source, other_source) = _epoch_pair(optimizer, hidden, dtype, rows=some)
    n = source.n_rows
    taken = []
    for epoch, limit in enumerate([None, 2, None]):
        order = np.random.default_rng(epoch).permutation(n)
        source.begin_epoch(order)
        other_source.begin_epoch(order)
        steps = ours.epoch(source, limit)
        taken.append(ours._takes_all(*source.in_memory()))
        one_by_one = step_through(other.step, other_source, limit)
        assert steps.losses == one_by_one.losses
        assert len(steps.losses) == (limit or -(-n // 32))
        assert (steps.total, steps.correct, steps.seen) == (
            one_by_one.total,
            one_by_one.correct,
            one_by_one.seen,
        )
        assert steps.seen == min(n, 32 * (limit or n)) and not steps.diverged
        for name, value in other.model.params.items():
            assert_array_equal(ours.model.params[name], value)
    assert all(taken)
    assert getattr(ours.optimizer, "t", 0) == getattr(other.optimizer, "t", 0)
    arrays, _ = ours.optimizer.state()
    for name, value in other.optimizer.state()[0].items():
        assert_array_equal(arrays[name], value)


@built
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_epoch_in_one_call_stops_at_the_first_non_finite_loss(optimizer):
    (ours, other), (source, other_source) = _epoch_pair(optimizer, (9,), np.float64, N=200)
    for engine in (ours, other):
        engine.optimizer.learning_rate = 1e200  # the second step's loss overflows
    order = np.arange(200)
    source.begin_epoch(order)
    other_source.begin_epoch(order)
    steps = ours.epoch(source)
    one_by_one = step_through(other.step, other_source)
    assert steps.diverged and 1 < len(steps.losses) < 7
    assert np.isfinite(steps.losses[:-1]).all()
    assert steps.losses[:-1] == one_by_one.losses[:-1] and one_by_one.diverged
    assert (steps.seen, steps.correct) == (one_by_one.seen, one_by_one.correct)
    assert steps.seen == 32 * (len(steps.losses) - 1)
    assert getattr(ours.optimizer, "t", 0) == getattr(other.optimizer, "t", 0)


@built
def test_an_epoch_in_one_call_takes_no_file_and_no_weights(tmp_path):
    """A memory-mapped X (its rows read from the file) or sample weights: a call a step."""
    (ours, _), _ = _epoch_pair("adam", (9,), np.float64)
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((50, 6)), rng.integers(0, 4, 50)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    cases = [
        TrainingData.of(ours.model, mapped, y, check_input=False),
        TrainingData.of(ours.model, X, y, sample_weight=np.ones(50)),
    ]
    for data in cases:
        with GatheredBatches(data, 32, ours.workspace) as source:
            source.begin_epoch(np.arange(50))
            arrays = source.in_memory()
            assert arrays is None or not ours._takes_all(*arrays)
            steps = ours.epoch(source)
            assert len(steps.losses) == 2 and steps.seen == 50


@built
def test_ctrl_c_reaches_an_epoch_in_one_call_between_two_steps():
    """SIGINT during a long compiled epoch raises KeyboardInterrupt there (the loop then
    goes back to the epoch's start), not after the epoch."""
    model = MLP(64, (256,), 10, seed=0)
    engine = engine_for(model, Adam(1e-3), TrainingConfig(), 200)
    X = np.random.default_rng(0).standard_normal((200_000, 64))
    data = TrainingData.of(model, X, np.arange(200_000) % 10)
    source = GatheredBatches(data, 200, engine.workspace)
    source.begin_epoch(np.arange(200_000))
    previous = signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        with pytest.raises(KeyboardInterrupt):
            engine.epoch(source)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert 0 < engine._net.seen < 200_000  # stopped part way: the rest not stepped


@built
def test_its_finiteness_check_is_one_pass_and_exact_past_an_overflow():
    (ours, _), (source, _) = _epoch_pair("adam", (9,), np.float64)
    source.begin_epoch(np.arange(source.n_rows))
    ours.epoch(source)
    assert ours.weights_finite()
    W1 = ours.model.params["W1"]
    W1[0, 0] = 1e200  # finite, but the squared norm overflows: the thorough check says so
    assert not np.isfinite(ours._net.squared_norm()) and ours.weights_finite()
    W1[0, 0] = np.nan
    assert not ours.weights_finite()
    ours.model.params["W1"] = np.asfortranarray(W1)  # an array the net does not point into
    assert not ours.weights_finite()


@built
def test_it_steps_in_the_workspaces_buffers():
    """No second set of (rows, H) buffers: the memory check counts the workspace's."""
    (ours, _), (source, _) = _epoch_pair("adam", (9, 7), np.float64)
    shared = ours.workspace.step_buffers()
    assert ours.grads is shared.grads and ours._S is shared.S and ours._losses is shared.losses
    source.begin_epoch(np.arange(source.n_rows))
    assert len(ours.epoch(source).losses) == 3
    Xb, Tb = ours.workspace.batch_buffers(source.X, source.T)
    assert ours._batch[0] is Xb and ours._batch[1] is Tb
    theirs = [*shared.A, *shared.dZ, shared.S, shared.dS, shared.losses, shared.labels]
    own = [
        v
        for v in vars(ours).values()
        if isinstance(v, np.ndarray) and not any(v is a for a in theirs)
    ]
    assert own and all(a.size <= ours.workspace.rows for a in own)  # (rows,) at most
