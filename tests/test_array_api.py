"""The array-API path on the CPU: PyTorch CPU tensors and array-api-strict arrays.

array-api-strict's arrays live on its "device1", which refuses to be combined with
arrays of any other device and to be converted to NumPy implicitly: anything that
silently left the device, or mixed host and device arrays, fails here. The numbers are
held to NumPy's (float64: to rounding; the gradients to 1e-12).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.datasets import make_blobs, make_regression

import handgrad._xp as _xp
from handgrad.errors import TrainingDivergedError
from handgrad.estimator import MLPClassifier, MLPRegressor
from handgrad.heads import ACTIVATIONS, HEADS
from handgrad.network import MLP
from handgrad.optim import SGD, Adam
from handgrad.state import load_model, save_model
from handgrad.training import TrainingConfig, fit

torch = pytest.importorskip("torch")
xs = pytest.importorskip("array_api_strict")

DEVICE1 = xs.Device("device1")


class Library:
    """How to put a NumPy array in a library on a device, and how to tell its arrays
    there (tests/test_cuda.py runs the same tests with its own)."""

    def __init__(self, name, put, array_type, device):
        self.name, self.put, self.array_type, self.device = name, put, array_type, device

    def __repr__(self) -> str:
        return self.name

    def holds(self, a) -> bool:
        return isinstance(a, self.array_type) and _xp.device(a) == self.device


LIBRARIES = [
    Library("torch", torch.asarray, torch.Tensor, torch.device("cpu")),
    Library(
        "array_api_strict",
        lambda a: xs.asarray(a, device=DEVICE1),
        xs._array_object.Array,
        DEVICE1,
    ),
]


@pytest.fixture(params=LIBRARIES, ids=repr)
def lib(request) -> Library:
    return request.param


@pytest.fixture
def dispatch():
    with sklearn.config_context(array_api_dispatch=True):
        yield


def host(a) -> np.ndarray:
    return np.asarray(_xp.to_numpy(a))


# ------------------------------------------------------------------ the reference
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_gradients_equal_the_numpy_reference(lib, activation, head):
    rng = np.random.default_rng(0)
    X, w = rng.standard_normal((9, 4)), rng.random(9)
    C = max(3, HEADS[head].task.min_outputs)
    T = HEADS[head].task.random_targets(rng, 9, C)
    net = MLP(4, (6, 5), C, activation=activation, head=head, seed=1)
    loss, grads = net.loss(X, T, reg=0.3, sample_weight=w)
    moved = net.copy().to(_xp.namespace(lib.put(X)), lib.device)
    loss_xp, grads_xp = moved.loss(lib.put(X), lib.put(T), reg=0.3, sample_weight=lib.put(w))
    assert isinstance(loss_xp, float)
    assert abs(loss_xp - loss) <= 1e-12 * max(1.0, abs(loss))
    assert sorted(grads_xp) == sorted(grads)
    for k, g in grads.items():
        assert lib.holds(grads_xp[k])
        np.testing.assert_allclose(host(grads_xp[k]), g, rtol=0, atol=1e-12)
    P, labels = moved.predict_proba(lib.put(X)), moved.predict(lib.put(X))
    assert lib.holds(P) and lib.holds(labels)
    np.testing.assert_allclose(host(P), net.predict_proba(X), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(host(labels), net.predict(X), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "make",
    [
        lambda: SGD(0.1),
        lambda: SGD(0.1, momentum=0.9),
        lambda: SGD(0.1, momentum=0.9, nesterov=True),
        lambda: Adam(0.01),
    ],
    ids=["sgd", "momentum", "nesterov", "adam"],
)
def test_optimizer_steps_equal_numpy(lib, make, dtype):
    """Element-wise and correctly rounded: the same bits as NumPy's ``out=`` code."""
    rng = np.random.default_rng(0)
    params = {"W1": rng.standard_normal((3, 4)).astype(dtype), "b1": rng.standard_normal(4)}
    params["b1"] = params["b1"].astype(dtype)
    steps = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}]
    steps.append({k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()})
    on_host, on_lib = make(), make()
    theta = {k: v.copy() for k, v in params.items()}
    theta_xp = {k: lib.put(v.copy()) for k, v in params.items()}
    for g in steps:
        on_host.update(theta, g)
        on_lib.update(theta_xp, {k: lib.put(v) for k, v in g.items()})
    for k in params:
        assert lib.holds(theta_xp[k])
        np.testing.assert_array_equal(host(theta_xp[k]), theta[k])
    arrays, _ = on_lib.state()
    assert all(lib.holds(a) for a in arrays.values())  # the state stays on the device


def test_training_brings_one_number_per_step_to_the_host(monkeypatch):
    """Only the step's loss comes back each step; the accuracy and the finiteness of
    the weights once per epoch (counted as PyTorch's conversions to Python numbers)."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((100, 4)), rng.integers(0, 3, 100)
    net = MLP(4, (5,), 3, seed=0)
    counted = {"n": 0}
    for name in ("__float__", "__bool__", "__int__", "item", "numpy", "tolist"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            counted["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    config = TrainingConfig(batch_size=10, max_epochs=3, stopping="none")
    history = fit(net, torch.asarray(X), y, optimizer=Adam(0.01), config=config, seed=0)
    assert history.steps == 30
    # each step's loss (so the counting works), and at most 3 numbers per epoch more
    assert history.steps <= counted["n"] <= history.steps + 3 * history.epochs
    assert isinstance(net.params["W1"], torch.Tensor)


def test_fit_on_another_library_equals_numpy_and_moves_back(lib):
    rng = np.random.default_rng(1)
    X, y, w = rng.standard_normal((50, 3)), rng.integers(0, 2, (50, 2)), rng.random(50)
    nets = [MLP(3, (4,), 2, head="sigmoid", seed=0) for _ in range(3)]
    config = TrainingConfig(batch_size=16, max_epochs=3, reg=0.01)
    val = (X[:10], y[:10])
    fit(
        nets[0],
        X,
        y,
        optimizer=SGD(0.1, momentum=0.9),
        config=config,
        seed=2,
        sample_weight=w,
        validation=val,
    )
    h = fit(
        nets[1],
        lib.put(X),
        lib.put(y),
        optimizer=SGD(0.1, momentum=0.9),
        config=config,
        seed=2,
        sample_weight=lib.put(w),
        validation=(lib.put(X[:10]), y[:10]),
    )
    assert all(lib.holds(v) for v in nets[1].params.values())
    for k, v in nets[0].params.items():
        np.testing.assert_allclose(host(nets[1].params[k]), v, rtol=1e-10, atol=1e-14)
    assert len(h.val_score) == 3 and len(h.train_score) == 3
    fit(nets[1], X, y, optimizer=SGD(0.1), config=config, seed=2)  # NumPy X: back to the host
    assert all(type(v) is np.ndarray for v in nets[1].params.values())


# ----------------------------------------------------------------- the estimators
@pytest.fixture(scope="module")
def blobs3():
    X, y = make_blobs(n_samples=90, centers=3, n_features=4, random_state=0)
    return (X - X.mean(0)) / X.std(0), y


def _fit_both(est, lib, X, y, dtype, **fit_params):
    """``(NumPy-fitted, library-fitted)`` clones of est on the same data."""
    numpy_fit = sklearn.clone(est).fit(X.astype(dtype), y, **fit_params)
    moved = {
        k: lib.put(v) if k != "eval_set" else (lib.put(v[0]), v[1]) for k, v in fit_params.items()
    }
    with sklearn.config_context(array_api_dispatch=True):
        lib_fit = sklearn.clone(est).fit(lib.put(X.astype(dtype)), lib.put(y), **moved)
    return numpy_fit, lib_fit


def _tolerance(dtype) -> dict:
    return {"rtol": 1e-10, "atol": 1e-12} if dtype == np.float64 else {"rtol": 2e-4, "atol": 1e-5}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"solver": "sgd", "learning_rate": "adaptive"},
        {"solver": "lbfgs"},
        {"early_stopping": True},
    ],
    ids=["adam", "sgd", "lbfgs", "early_stopping"],
)
def test_classifier_on_another_library_equals_numpy(lib, blobs3, params, dtype, dispatch):
    X, y = blobs3
    est = MLPClassifier((6,), max_iter=6, random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged in 6 epochs
        a, b = _fit_both(est, lib, X, y, dtype)
    tol = _tolerance(dtype)
    assert all(lib.holds(W) for W in b.coefs_ + b.intercepts_)
    assert _xp.numpy_dtype(b.coefs_[0].dtype) == dtype
    for W_a, W_b in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_allclose(host(W_b), W_a, **tol)
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, **tol)
    Xd = lib.put(X.astype(dtype))
    P, labels = b.predict_proba(Xd), b.predict(Xd)
    assert lib.holds(P) and lib.holds(labels)
    np.testing.assert_allclose(host(P), a.predict_proba(X.astype(dtype)), **tol)
    np.testing.assert_array_equal(host(labels), a.predict(X.astype(dtype)))
    assert lib.holds(b.predict_log_proba(Xd))
    assert b.score(Xd, lib.put(y)) == pytest.approx(a.score(X.astype(dtype), y), abs=1e-6)
    if params.get("early_stopping"):
        np.testing.assert_allclose(b.validation_scores_, a.validation_scores_)


def test_classifier_sample_weight_eval_set_and_partial_fit(lib, blobs3, dispatch):
    X, y = blobs3
    w = np.linspace(0.5, 2, len(y))
    est = MLPClassifier((6,), max_iter=4, random_state=0, early_stopping=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = _fit_both(est, lib, X, y, np.float64, sample_weight=w, eval_set=(X[:30], y[:30]))
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(b.validation_scores_, a.validation_scores_)
    a = MLPClassifier((6,), random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    b = MLPClassifier((6,), random_state=0).partial_fit(lib.put(X), lib.put(y), classes=[0, 1, 2])
    a.partial_fit(X[:40], y[:40])
    b.partial_fit(lib.put(X[:40]), lib.put(y[:40]))
    assert lib.holds(b.coefs_[0])
    np.testing.assert_allclose(host(b.coefs_[0]), a.coefs_[0], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("kind", ["binary", "multilabel", "strings"])
def test_classifier_labels(lib, blobs3, kind, dispatch):
    X, y = blobs3
    if kind == "binary":
        y = np.array([5, 7])[(y == 1).astype(int)]  # numeric classes, mapped on the device
    elif kind == "multilabel":
        y = np.stack([y == 1, y != 2], axis=1).astype(int)
    else:
        y = np.array(["cat", "dog", "emu"])[y]
    target = y if kind == "strings" else lib.put(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged in 10 epochs
        a = MLPClassifier((6,), max_iter=10, random_state=0).fit(X, y)
        b = MLPClassifier((6,), max_iter=10, random_state=0).fit(lib.put(X), target)
    labels = b.predict(lib.put(X))
    if kind == "strings":  # no other library holds strings: NumPy labels
        assert isinstance(labels, np.ndarray)
        np.testing.assert_array_equal(labels, a.predict(X))
    else:
        assert lib.holds(labels)
        np.testing.assert_array_equal(host(labels), a.predict(X))
    P = b.predict_proba(lib.put(X))
    assert lib.holds(P) and P.shape == a.predict_proba(X).shape
    np.testing.assert_allclose(host(P), a.predict_proba(X), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressor_on_another_library_equals_numpy(lib, loss, dtype, dispatch):
    X, y = make_regression(n_samples=80, n_features=3, n_targets=2, random_state=0)
    y = y / y.std()
    if loss == "poisson":
        y = np.abs(y)
    est = MLPRegressor(
        loss=loss, hidden_layer_sizes=(5,), max_iter=5, random_state=0, early_stopping=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = _fit_both(est, lib, X, y, dtype, sample_weight=np.linspace(1, 2, 80))
    tol = _tolerance(dtype)
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, **tol)
    np.testing.assert_allclose(b.validation_scores_, a.validation_scores_, **tol)
    Xd = lib.put(X.astype(dtype))
    P = b.predict(Xd)
    assert lib.holds(P) and P.shape == (80, 2)
    np.testing.assert_allclose(host(P), a.predict(X.astype(dtype)), **tol)
    assert b.score(Xd, lib.put(y.astype(dtype))) == pytest.approx(
        a.score(X.astype(dtype), y.astype(dtype)), rel=1e-4
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = sklearn.clone(est).set_params(early_stopping=False).fit(Xd, lib.put(y[:, 0]))
    assert lib.holds(one.predict(Xd)) and one.predict(Xd).shape == (80,)
    one.partial_fit(Xd, lib.put(y[:, 0]))
    assert lib.holds(one.coefs_[0])


def test_model_trained_on_another_library_loads_as_numpy(lib, blobs3, tmp_path, dispatch):
    X, y = blobs3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPClassifier((6,), max_iter=5, random_state=0).fit(lib.put(X), lib.put(y))
    path = save_model(tmp_path / "model.safetensors", est)
    P = host(est.predict_proba(lib.put(X)))
    with sklearn.config_context(array_api_dispatch=False):
        loaded = load_model(path)
        assert all(type(W) is np.ndarray for W in loaded.coefs_)
        for W, W_saved in zip(loaded.coefs_, est.coefs_, strict=True):
            np.testing.assert_array_equal(W, host(W_saved))
        np.testing.assert_allclose(loaded.predict_proba(X), P, rtol=1e-12, atol=1e-15)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded.partial_fit(X, y)  # the saved optimizer state continues on the host
    # the NumPy model predicts on the library's arrays too, without moving itself
    assert lib.holds(loaded.predict(lib.put(X)))
    assert type(loaded.coefs_[0]) is np.ndarray


# ---------------------------------------------------------------------- errors
def test_dispatch_off_converts_host_arrays_as_scikit_learn(blobs3):
    X, y = blobs3
    est = MLPClassifier((6,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = sklearn.clone(est).fit(X, y)
        b = sklearn.clone(est).fit(torch.asarray(X), torch.asarray(y))  # np.asarray works
    assert type(b.coefs_[0]) is np.ndarray
    P = b.predict_proba(torch.asarray(X))
    assert type(P) is np.ndarray
    np.testing.assert_array_equal(P, a.predict_proba(X))


@pytest.mark.parametrize(
    "put",
    [lambda a: xs.asarray(a, device=DEVICE1), lambda a: torch.asarray(a, device="meta")],
    ids=["array_api_strict device1", "torch meta"],
)
def test_dispatch_off_device_array_is_one_clear_error(blobs3, put):
    X, y = blobs3
    with pytest.raises(TypeError, match=r"^X is a .* on device .*array_api_dispatch=True"):
        MLPClassifier((6,), max_iter=3).fit(put(X), y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPClassifier((6,), max_iter=3).fit(X, y)
    with pytest.raises(TypeError, match=r"^X is a .*cannot be converted to NumPy"):
        est.predict(put(X))


def test_mixed_libraries_are_refused(blobs3):
    X, y = blobs3
    with pytest.raises(TypeError, match=r"^arrays of different libraries .*numpy\.ndarray"):
        _xp.namespace(X, torch.asarray(X))
    net = MLP(4, (5,), 3, seed=0).to(_xp.namespace(torch.asarray(X)), "cpu")
    with pytest.raises(TypeError, match=r"X is a numpy\.ndarray, but the network's parameters"):
        net.loss(X)
    config = TrainingConfig(max_epochs=1, stopping="none")
    with pytest.raises(TypeError, match="X_val must be an array of the same library as X"):
        fit(
            MLP(4, (5,), 3, seed=0),
            torch.asarray(X),
            y,
            optimizer=SGD(0.1),
            config=config,
            validation=(X, y),
        )


def test_bad_input_on_a_device_is_the_same_clear_error(lib, blobs3, dispatch):
    X, y = blobs3
    X = X.copy()
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"^X contains NaN \(first at row 3, column 2\)"):
        MLPClassifier((6,), max_iter=2).fit(lib.put(X), lib.put(y))
    with pytest.raises(ValueError, match="X has 2 features, but MLPClassifier is expecting 4"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = MLPClassifier((6,), max_iter=2).fit(lib.put(blobs3[0]), lib.put(y))
        est.predict(lib.put(blobs3[0][:, :2]))


def test_divergence_on_a_device_keeps_the_last_finished_epoch(lib):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)) * 1e3, rng.standard_normal(40)
    net = MLP(3, (4,), 1, head="identity", seed=0)
    config = TrainingConfig(batch_size=10, max_epochs=5, stopping="none")
    on_host = net.copy()
    fit(net, lib.put(X), y, optimizer=SGD(1e-9), config=config, seed=0)
    before = {k: host(v).copy() for k, v in net.params.items()}
    with pytest.raises(TrainingDivergedError, match=r"non-finite in epoch 1 \(step \d") as exc:
        fit(net, lib.put(X), y, optimizer=SGD(1e30), config=config, seed=0)
    fit(on_host, X, y, optimizer=SGD(1e-9), config=config, seed=0)
    with pytest.raises(TrainingDivergedError) as on_host_exc:
        fit(on_host, X, y, optimizer=SGD(1e30), config=config, seed=0)
    assert str(exc.value) == str(on_host_exc.value)  # the same step, named the same way
    for k, v in net.params.items():  # put back on the device as the epoch began
        assert lib.holds(v)
        np.testing.assert_array_equal(host(v), before[k])


def test_missing_array_api_compat_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "array_api_compat", None)  # as if not installed
    assert _xp.namespace(np.ones(2), None, 3.0) is np  # NumPy needs nothing more
    with pytest.raises(ImportError, match=r"pip install 'handgrad\[array-api\]'"):
        _xp.namespace(torch.ones(2))


def test_gpu_benchmark_smoke_run_on_cpu(tmp_path, capsys):
    """benchmarks/gpu.py runs end to end (on the CPU, tiny), so that it cannot rot."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("_bench_gpu", path)
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    out = tmp_path / "gpu.json"
    argv = ["--device", "cpu", "--rows", "300", "--rounds", "1", "--batch", "100"]
    rows = gpu.main([*argv, "--workload", "mnist", "--out", str(out)])
    assert [r["candidate"] for r in rows] == list(gpu.CANDIDATES)
    assert rows[0]["ratio_to_floor"] == 1.0 and all(r["median_s"] > 0 for r in rows)
    assert json.loads(out.read_text()) == rows
    assert "mnist-like, 300 rows, batch 100" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 2 epochs
def test_torch_cpu_threads_follow_the_work_and_come_back(blobs3, dispatch):
    """PyTorch spreads even tiny CPU products over all its OpenMP threads (which lose
    many times over on a busy machine): a small fit runs its step on one thread, and
    the user's setting is back afterwards."""
    from threadpoolctl import ThreadpoolController

    from handgrad.training import Callback

    def openmp_threads() -> list[int]:
        pools = ThreadpoolController().select(user_api="openmp").lib_controllers
        return [lib.get_num_threads() for lib in pools]

    before = openmp_threads()
    seen = []

    class Look(Callback):
        def on_epoch_end(self, run):
            seen.append(openmp_threads())

    X, y = blobs3
    MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(
        torch.asarray(X), torch.asarray(y), callbacks=[Look()]
    )
    assert seen and all(counts == [1] * len(before) for counts in seen)
    assert openmp_threads() == before


# ------------------------------------------------------------- the _xp helpers
def test_the_helpers_compute_numpy_s_own_results_to_the_bit():
    import scipy.special

    rng = np.random.default_rng(0)
    A, B, w = rng.standard_normal((5, 3)), rng.random((5, 3)), rng.random(5)
    assert _xp.weighted_sum(w, A[:, 0]) == float(np.dot(w, A[:, 0]))
    np.testing.assert_array_equal(_xp.row_dot(A, A), np.einsum("ij,ij->i", A, A))
    assert _xp.squared_norm(A) == float(np.vdot(A, A))
    assert _xp.total(w) == float(w.sum()) and isinstance(_xp.total(w), float)
    np.testing.assert_array_equal(_xp.expit(A), scipy.special.expit(A))
    np.testing.assert_array_equal(_xp.xlogy(B, B), scipy.special.xlogy(B, B))
    np.testing.assert_array_equal(_xp.multiply_mask(A, A > 0), A * (A > 0))
    S = A.copy()
    assert _xp.expit(S, overwrite=True) is S  # over S itself: no second (N, C) array


def test_the_helpers_stay_on_the_device_and_agree_with_numpy(lib):
    rng = np.random.default_rng(1)
    A, B, w = rng.standard_normal((5, 3)), rng.random((5, 3)), rng.random(5)
    B[0, 0] = 0.0  # 0 log 0 = 0
    for got, want in [
        (_xp.weighted_sum(lib.put(w), lib.put(A[:, 0])), np.dot(w, A[:, 0])),
        (_xp.row_dot(lib.put(A), lib.put(A)), np.einsum("ij,ij->i", A, A)),
        (_xp.squared_norm(lib.put(A)), np.vdot(A, A)),
        (_xp.total(lib.put(w)), w.sum()),
        (_xp.expit(lib.put(A)), _xp.expit(A)),
        (_xp.xlogy(lib.put(B), lib.put(B)), _xp.xlogy(B, B)),
        (_xp.multiply_mask(lib.put(A), lib.put(A) > 0), A * (A > 0)),
    ]:
        assert lib.holds(got)
        np.testing.assert_allclose(host(got), want, rtol=1e-12, atol=0)


def test_the_kind_of_array_is_asked_of_xp(lib, tmp_path):
    """A NumPy array (memory-mapped too) is dense NumPy; a list, a sparse matrix or
    another library's array is not; only ndarray itself is a plain ndarray; an array
    is on its own namespace and device, and on no other."""
    import scipy.sparse as sp

    X = np.ones((3, 2))
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    assert _xp.is_dense_numpy(X) and _xp.is_dense_numpy(mapped)
    assert not any(map(_xp.is_dense_numpy, ([1.0], sp.csr_matrix(X), lib.put(X), 1.0)))
    assert _xp.is_plain_ndarray(X) and not _xp.is_plain_ndarray(mapped)
    assert not _xp.is_plain_ndarray(np.ma.asarray(X))  # a subclass
    on_device, xp = lib.put(X), _xp.namespace(lib.put(X))
    assert _xp.is_on(X, np, "cpu") and _xp.is_on(on_device, xp, lib.device)
    assert not _xp.is_on(X, xp, lib.device) and not _xp.is_on(on_device, np, "cpu")


def test_a_network_and_x_of_different_places_is_one_clear_line(lib):
    net = MLP(4, (5,), 3, seed=0).to(_xp.namespace(lib.put(np.ones(1))), lib.device)
    with pytest.raises(TypeError, match=r"^X is a numpy.ndarray, but the network's parameters"):
        net.loss(np.ones((2, 4)))


def test_the_device_finiteness_check_names_the_first_infinity_and_survives_overflow(lib):
    from handgrad._validation import check_X

    X = np.full((6, 3), 1e308)  # every entry finite, but their sum overflows
    assert lib.holds(check_X(lib.put(X)))
    X[4, 1], X[5, 0] = -np.inf, np.nan
    with pytest.raises(ValueError, match=r"^X contains infinity \(first at row 4, column 1\)"):
        check_X(lib.put(X))
