"""Dropout, batch and layer normalization in every face (issue 27): the network, the
estimators, model files and checkpoints, resumes and rollbacks, the engines, PyTorch's
whole network, the command line, ONNX and the array-API path.

The pairs themselves are checked in tests/test_layers_regularize.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_iris, make_blobs
from sklearn.utils._param_validation import InvalidParameterError

from handgrad._xp import to_numpy
from handgrad.cli import main
from handgrad.errors import ModelFileError
from handgrad.estimator import MLPClassifier, MLPRegressor
from handgrad.gradcheck import gradient_errors
from handgrad.modelfile import load_arrays
from handgrad.network import MLP, Context
from handgrad.optim import SGD, Adam
from handgrad.state import load_model, load_run, save_model, save_run
from handgrad.training import Engine, Run, TrainingConfig, engine_for, fit
from handgrad.training.engines import FastEngine
from handgrad.training.run import EpochStart

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

LAYERS = [
    {"norm": "batch"},
    {"norm": "layer"},
    {"dropout": 0.3},
    {"norm": "batch", "dropout": 0.2},
    {"norm": "layer", "dropout": 0.5},
]
IDS = ["batch", "layer", "dropout", "batch+dropout", "layer+dropout"]


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=90, centers=3, n_features=4, random_state=0)
    return (X - X.mean(0)) / X.std(0), y


def _training(seed: int = 5) -> Context:
    return Context(train=True, rng=np.random.default_rng(seed))


# ------------------------------------------------------------------ the network
def test_the_new_parameters_and_state_are_named_as_the_notes_name_them():
    net = MLP(4, (5, 3), 2, norm="batch", seed=0)
    assert sorted(net.params) == sorted(
        ["W1", "b1", "W2", "b2", "W3", "b3", "gamma1", "beta1", "gamma2", "beta2"]
    )
    assert sorted(net.state) == ["running_mean1", "running_mean2", "running_var1", "running_var2"]
    np.testing.assert_array_equal(net.params["gamma2"], np.ones(3))
    np.testing.assert_array_equal(net.params["beta1"], np.zeros(5))
    np.testing.assert_array_equal(net.state["running_var1"], np.ones(5))
    np.testing.assert_array_equal(net.state["running_mean2"], np.zeros(3))
    assert MLP(4, (5,), 2, norm="layer").state == {}  # layer norm keeps no statistics
    plain = MLP(4, (5, 3), 2, seed=0)
    assert sorted(plain.params) == ["W1", "W2", "W3", "b1", "b2", "b3"] and plain.state == {}
    for k, v in plain.params.items():  # drawn before γ, β: the same weights
        np.testing.assert_array_equal(net.params[k], v)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dropout": 1.0}, "dropout must be < 1, but got 1.0"),
        ({"dropout": -0.1}, "dropout must be >= 0"),
        ({"norm": "group"}, "norm must be one of batch, layer, but got 'group'"),
    ],
)
def test_bad_layer_arguments_are_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(4, (5,), 2, **kwargs)


@pytest.mark.parametrize("layers", LAYERS, ids=IDS)
def test_gradients_match_finite_differences_with_a_fixed_mask(layers):
    rng = np.random.default_rng(0)
    net = MLP(4, (6, 5), 3, seed=1, **layers)
    X, y = rng.standard_normal((7, 4)), rng.integers(0, 3, 7)
    errors = gradient_errors(net, X, y, reg=0.1, context=_training)
    for name, (entry, norm) in errors.items():
        if layers.get("norm") == "batch" and name in ("b1", "b2"):
            continue  # ∂L/∂b = 0 before batch norm: both sides are rounding
        assert entry < 1e-6, (name, entry)
        assert norm < 1e-8, (name, norm)


def test_the_penalty_never_touches_gamma_and_beta():
    rng = np.random.default_rng(0)
    net = MLP(4, (6,), 3, seed=1, norm="batch")
    X, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    loss0, g0 = net.loss(X, y, reg=0.0, ctx=_training())
    loss1, g1 = net.loss(X, y, reg=2.0, ctx=_training())
    penalty = sum(float(np.sum(W * W)) for W in net.weights)
    assert loss1 - loss0 == pytest.approx(penalty, rel=1e-12)
    for name in ("gamma1", "beta1", "b1", "b2"):
        np.testing.assert_array_equal(g1[name], g0[name])
    np.testing.assert_allclose(g1["W1"] - g0["W1"], 2.0 * net.params["W1"], rtol=1e-12)


def test_predict_is_the_eval_forward_and_draws_nothing():
    rng = np.random.default_rng(0)
    net = MLP(4, (6,), 3, seed=1, norm="batch", dropout=0.5)
    net.state["running_mean1"] = rng.standard_normal(6)
    net.state["running_var1"] = rng.random(6) + 0.5
    X = rng.standard_normal((9, 4))
    Z = X @ net.params["W1"] + net.params["b1"]
    Y = (Z - net.state["running_mean1"]) / np.sqrt(net.state["running_var1"] + 1e-5)
    S = np.maximum(Y, 0) @ net.params["W2"] + net.params["b2"]
    np.testing.assert_allclose(net.loss(X), S, rtol=1e-13)
    np.testing.assert_array_equal(net.predict(X), S.argmax(1))
    before = {k: v.copy() for k, v in net.state.items()}
    net.predict_proba(X)
    for k, v in before.items():  # predict moves no running statistic
        np.testing.assert_array_equal(net.state[k], v)


def test_a_one_row_batch_is_normalized_by_the_running_statistics():
    net = MLP(3, (4,), 2, seed=0, norm="batch")
    X = np.array([[1.0, -2.0, 0.5]])
    before = {k: v.copy() for k, v in net.state.items()}
    loss_train, _ = net.loss(X, [1], ctx=_training())
    np.testing.assert_allclose(loss_train, net.loss(X, [1])[0], rtol=1e-14)
    for k, v in before.items():
        np.testing.assert_array_equal(net.state[k], v)


# ---------------------------------------------------------- PyTorch, the whole network
def test_whole_network_with_batch_norm_and_dropout_equals_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    D, H1, H2, C, N, rate, reg = 5, 7, 6, 3, 11, 0.25, 0.05
    net = MLP(D, (H1, H2), C, seed=2, norm="batch", dropout=rate)
    for l, H in ((1, H1), (2, H2)):
        net.params[f"gamma{l}"] = rng.random(H) + 0.5
        net.params[f"beta{l}"] = rng.standard_normal(H)
    X, y = rng.standard_normal((N, D)), rng.integers(0, C, N)
    loss, grads = net.loss(X, y, reg=reg, ctx=_training(9))

    masks = np.random.default_rng(9)  # the same uniforms, drawn in the same order
    t = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    A = torch.tensor(X)
    for l, H in ((1, H1), (2, H2)):
        bn = torch.nn.BatchNorm1d(H, dtype=torch.float64)
        with torch.no_grad():
            bn.weight.copy_(t[f"gamma{l}"])
            bn.bias.copy_(t[f"beta{l}"])
        Z = A @ t[f"W{l}"] + t[f"b{l}"]
        Y = torch.nn.functional.batch_norm(
            Z, bn.running_mean, bn.running_var, t[f"gamma{l}"], t[f"beta{l}"], training=True
        )
        M = torch.tensor(masks.random((N, H)) < 1 - rate, dtype=torch.float64)
        A = torch.relu(Y) * M / (1 - rate)
        np.testing.assert_allclose(net.state[f"running_mean{l}"], bn.running_mean, rtol=1e-12)
        np.testing.assert_allclose(net.state[f"running_var{l}"], bn.running_var, rtol=1e-12)
    S = A @ t["W3"] + t["b3"]
    penalty = sum((t[f"W{l}"] ** 2).sum() for l in (1, 2, 3))
    torch_loss = torch.nn.functional.cross_entropy(S, torch.tensor(y)) + reg / 2 * penalty
    torch_loss.backward()
    assert abs(loss - torch_loss.item()) < 1e-10
    for k, v in t.items():
        np.testing.assert_allclose(grads[k], v.grad.numpy(), rtol=1e-10, atol=1e-10, err_msg=k)


# ---------------------------------------------------------------- the estimators
@pytest.mark.parametrize("layers", LAYERS, ids=IDS)
def test_estimators_train_predict_and_are_bit_identical_run_to_run(blobs, layers):
    X, y = blobs
    a = MLPClassifier((16,), max_iter=30, random_state=0, batch_size=32, **layers).fit(X, y)
    b = MLPClassifier((16,), max_iter=30, random_state=0, batch_size=32, **layers).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.predict_proba(X).shape == (90, 3)
    assert a.score(X, y) > 0.85
    assert a.network_.norm == layers.get("norm")
    assert a.network_.dropout == layers.get("dropout", 0.0)
    r = MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0, **layers)
    r.fit(X, X[:, 0] * 2.0)
    assert r.predict(X).shape == (90,)


def test_defaults_draw_nothing_and_change_no_trajectory(blobs):
    X, y = blobs
    plain = MLPClassifier((8,), max_iter=15, random_state=0).fit(X, y)
    explicit = MLPClassifier((8,), max_iter=15, random_state=0, dropout=0.0, norm=None)
    explicit.fit(X, y)
    assert plain.loss_curve_ == explicit.loss_curve_
    assert plain.network_.plain
    assert plain._run.rng.bit_generator.state == explicit._run.rng.bit_generator.state


@pytest.mark.parametrize(
    ("params", "name"), [({"dropout": 1.0}, "dropout"), ({"norm": "group"}, "norm")]
)
def test_bad_estimator_parameters_are_scikit_learns_error(blobs, params, name):
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of MLPClassifier"):
        MLPClassifier(**params).fit(*blobs)


def test_warm_start_refuses_another_norm(blobs):
    est = MLPClassifier((8,), max_iter=3, random_state=0, norm="batch", warm_start=True)
    est.fit(*blobs)
    est.set_params(norm="layer")
    with pytest.raises(ValueError, match="cannot continue a network with norm='batch'"):
        est.fit(*blobs)


# ------------------------------------------------------- files, resumes, rollbacks
@pytest.mark.parametrize("layers", LAYERS, ids=IDS)
def test_model_files_keep_gamma_beta_and_the_running_statistics(blobs, tmp_path, layers):
    X, y = blobs
    est = MLPClassifier((8, 5), max_iter=10, random_state=0, **layers).fit(X, y)
    path = save_model(tmp_path / "m.safetensors", est)
    back = load_model(path)
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    assert (back.norm, back.dropout) == (est.norm, est.dropout)
    for k, v in est.network_.state.items():
        np.testing.assert_array_equal(back.network_.state[k], v)
    tensors = load_arrays(path)[0]
    if layers.get("norm") == "batch":
        assert {"state.running_mean1", "state.running_var2", "gamma1", "beta2"} <= set(tensors)
    est.partial_fit(X, y)  # the loaded run goes on as the saved one does
    back.partial_fit(X, y)
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))


def test_a_plain_network_file_loads_as_before_and_missing_statistics_are_refused(tmp_path):
    plain = MLP(4, (5,), 3, seed=0)
    back = load_model(save_model(tmp_path / "plain.safetensors", plain))
    assert back.norm is None and back.dropout == 0.0 and back.state == {}
    net = MLP(4, (5,), 3, seed=0, norm="batch")
    path = save_model(tmp_path / "bn.safetensors", net)
    back = load_model(path)
    assert back.norm == "batch" and sorted(back.state) == ["running_mean1", "running_var1"]
    # the file names its norm in its metadata, but holds no running statistics
    from handgrad.state import mlp_from_state, network_state

    tensors, meta = network_state(net)
    del tensors["state.running_var1"]
    with pytest.raises(
        ModelFileError, match=r"running statistics \['running_mean1'\], but the network"
    ):
        mlp_from_state({k: v for k, v in tensors.items()}, meta)


def _run(layers: dict, seed: int = 3) -> Run:
    net = MLP(4, (6,), 3, seed=0, **layers)
    return Run(net, Adam(0.01), np.random.default_rng(seed))


@pytest.mark.parametrize("layers", LAYERS, ids=IDS)
def test_a_resumed_run_is_bit_identical_to_an_unbroken_one(blobs, tmp_path, layers):
    X, y = blobs
    config = TrainingConfig(batch_size=16, max_epochs=2, stopping="none")
    whole = _run(layers)
    fit(whole.model, X, y, optimizer=whole.optimizer, config=config, run=whole)
    fit(whole.model, X, y, optimizer=whole.optimizer, config=config, run=whole)
    part = _run(layers)
    fit(part.model, X, y, optimizer=part.optimizer, config=config, run=part)
    save_run(tmp_path / "ck.safetensors", part)
    resumed, _ = load_run(tmp_path / "ck.safetensors")
    fit(resumed.model, X, y, optimizer=resumed.optimizer, config=config, run=resumed)
    assert resumed.history.loss == whole.history.loss
    for k, v in whole.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[k], v)
    for k, v in whole.model.state.items():
        np.testing.assert_array_equal(resumed.model.state[k], v)


def test_the_epoch_rollback_restores_the_running_statistics_and_the_masks(blobs):
    X, y = blobs
    run = _run({"norm": "batch", "dropout": 0.5})
    start = EpochStart(run)
    state = {k: v.copy() for k, v in run.model.state.items()}
    engine = engine_for(run.model, run.optimizer, TrainingConfig(), 16, run.rng)
    T = run.model.encode_targets(y[:16], 16)
    first = engine.step(X[:16], T, None, 16.0)[0]
    assert not np.array_equal(run.model.state["running_mean1"], state["running_mean1"])
    start.restore(run)
    for k, v in state.items():
        np.testing.assert_array_equal(run.model.state[k], v)
    assert engine.step(X[:16], T, None, 16.0)[0] == first  # the same mask drawn again


# ------------------------------------------------------------------- the engines
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layers", LAYERS, ids=IDS)
def test_a_fast_step_equals_the_reference_step(blobs, layers, dtype):
    """The in-place forms (inplace.py) in the workspace's buffers against the pairs:
    the same loss, gradients (γ, β included), masks and running statistics."""
    X, y = blobs[0][:40].astype(dtype), blobs[1][:40]
    nets = [MLP(4, (6, 5), 3, seed=0, dtype=dtype, **layers) for _ in range(2)]
    engines = [
        engine_for(net, Adam(), TrainingConfig(engine=name), 40, np.random.default_rng(7))
        for net, name in zip(nets, ("fast", "reference"), strict=True)
    ]
    assert [type(e) for e in engines] == [FastEngine, Engine]
    T = nets[0].encode_targets(y, 40)
    (fast_loss, fast, _), (loss, grads, _) = (
        e.loss_and_gradients(X, T, None, 0.1) for e in engines
    )
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == np.float64 else {"rtol": 1e-4, "atol": 1e-5}
    assert fast_loss == pytest.approx(float(loss), rel=tol["rtol"])
    assert sorted(fast) == sorted(grads)
    for k, g in grads.items():
        np.testing.assert_allclose(fast[k], g, **tol, err_msg=k)
    for k, v in nets[1].state.items():
        np.testing.assert_allclose(nets[0].state[k], v, **tol, err_msg=k)


@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["fused SGD", "SGD momentum"])
@pytest.mark.parametrize("layers", LAYERS, ids=IDS)
def test_fast_training_equals_reference_training(blobs, layers, momentum):
    """Whole runs (81 rows in batches of 16: the last batch one row, which batch norm
    normalizes by its running statistics) with validation scores, to 1e-12."""
    X, y = blobs[0][:81], blobs[1][:81]
    nets = [MLP(4, (6, 5), 3, seed=0, **layers) for _ in range(2)]
    histories = []
    for net, name in zip(nets, ("fast", "reference"), strict=True):
        config = TrainingConfig(batch_size=16, max_epochs=3, reg=0.01, engine=name)
        histories.append(
            fit(
                net,
                X,
                y,
                optimizer=SGD(0.1, momentum=momentum),
                config=config,
                seed=4,
                validation=(X[:20], y[:20]),
            )
        )
    np.testing.assert_allclose(histories[0].step_loss, histories[1].step_loss, rtol=1e-12)
    assert histories[0].val_score == histories[1].val_score
    for name in ("params", "state"):
        for k, v in getattr(nets[1], name).items():
            np.testing.assert_allclose(getattr(nets[0], name)[k], v, rtol=1e-12, atol=1e-12)


# -------------------------------------------------------------- the command line
def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_gradcheck_with_dropout_and_batch_norm_passes():
    out = invoke("gradcheck", "--dropout", "0.2", "--norm", "batch", "--hidden", "6,5")
    assert "norm='batch', dropout=0.2" in out
    assert "gamma2" in out and "beta1" in out and "b1 *" in out
    assert "PASS: every gradient agrees" in out
    assert "FAIL" not in out


def test_explain_shows_the_new_terms_and_shapes():
    out = invoke("explain", "--dropout", "0.2", "--norm", "layer", "--hidden", "5", "--batch", "8")
    assert "Y1 = γ1 ⊙ (Z1 − μ_i)/√(σ²_i + ε) + β1" in out
    assert "Ã1 = A1 ⊙ M1 / p" in out
    assert "dA1 = dÃ1 ⊙ M1 / p" in out
    assert "dγ1       dγ1 = Σ_rows dY1 ⊙ x̂1" in out
    assert "(5,)" in out and "(8, 5)" in out
    # 64·5 + 5 + 5·10 + 10 weights and biases, and γ1, β1
    assert f"{64 * 5 + 5 + 5 * 10 + 10 + 2 * 5:,} parameters" in out


def test_train_with_dropout_and_batch_norm_writes_a_model_with_them(tmp_path):
    out = tmp_path / "run"
    invoke("train", "--dropout", "0.2", "--norm", "batch", "--epochs", "3", "--out", out, "-q")
    config = json.loads((out / "config.json").read_text())
    assert config["dropout"] == 0.2 and config["norm"] == "batch"
    model = load_model(out / "model.safetensors")
    est = model[-1] if hasattr(model, "steps") else model
    assert est.network_.norm == "batch" and est.network_.dropout == 0.2
    assert sorted(est.network_.state)[0] == "running_mean1"


def test_search_searches_dropout_and_norm(tmp_path):
    out = invoke(
        "search",
        "--data",
        "iris",
        "--iter",
        "3",
        "--cv",
        "2",
        "--epochs",
        "2",
        "--dropout-choices",
        "0,0.3",
        "--norm-choices",
        "none,batch,layer",
        "--out",
        tmp_path / "s",
    )
    assert "dropout  norm" in out
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    tried = metrics["search"]["results"]
    assert {r["norm"] for r in tried} <= {None, "batch", "layer"}
    assert {r["dropout"] for r in tried} <= {0.0, 0.3}
    assert set(metrics["search"]["best_params"]) >= {"dropout", "norm"}


# ----------------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("layers", LAYERS, ids=IDS)
def test_onnx_export_equals_predict(layers):
    ort = pytest.importorskip("onnxruntime")
    from handgrad.export import to_onnx

    X, y = load_iris(return_X_y=True)
    est = MLPClassifier((12, 6), max_iter=40, random_state=0, **layers).fit(X, y)
    session = ort.InferenceSession(to_onnx(est).SerializeToString())
    label, proba = session.run(None, {"X": X.astype(np.float32)})
    np.testing.assert_allclose(proba, est.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(label, est.predict(X))
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0, **layers)
    reg.fit(X, X[:, 0])
    session = ort.InferenceSession(to_onnx(reg, dtype=np.float64).SerializeToString())
    np.testing.assert_allclose(session.run(None, {"X": X})[0], reg.predict(X), atol=1e-10)


# -------------------------------------------------------------------- the array API
@pytest.mark.parametrize("library", ["torch", "array_api_strict"])
@pytest.mark.parametrize("layers", LAYERS, ids=IDS)
def test_array_api_training_equals_numpy(blobs, library, layers):
    lib = pytest.importorskip(library)
    put = (
        lib.asarray
        if library == "torch"
        else (lambda a: lib.asarray(a, device=lib.Device("device1")))
    )
    X, y = blobs
    config = TrainingConfig(batch_size=16, max_epochs=3, reg=0.01)
    nets = [MLP(4, (6,), 3, seed=0, **layers) for _ in range(2)]
    fit(nets[0], X, y, optimizer=Adam(0.01), config=config, seed=2, validation=(X[:20], y[:20]))
    fit(
        nets[1],
        put(X),
        put(y),
        optimizer=Adam(0.01),
        config=config,
        seed=2,
        validation=(put(X[:20]), y[:20]),
    )
    # b1 before batch norm has a gradient of rounding alone, which Adam scales up to
    # steps: its (and the running mean's) last digits follow each library's rounding
    atol = 1e-9 if layers.get("norm") == "batch" else 1e-12
    for name in ("params", "state"):
        for k, v in getattr(nets[0], name).items():
            got = to_numpy(getattr(nets[1], name)[k])
            np.testing.assert_allclose(got, v, rtol=1e-10, atol=atol, err_msg=k)
    S = nets[1].loss(put(X))  # predict time, on the device
    np.testing.assert_allclose(to_numpy(S), nets[0].loss(X), rtol=1e-10, atol=atol)


def test_early_stopping_restores_the_best_epochs_running_statistics_with_its_weights():
    """The best epoch's weights and its batch-norm running statistics come back
    together: weights of one epoch with another's statistics would predict wrongly."""
    from sklearn.datasets import load_digits

    from handgrad import MLPClassifier
    from handgrad.training import Callback

    X, y = load_digits(return_X_y=True)
    snapshots = []

    class Keep(Callback):
        def on_epoch_end(self, run):
            snapshots.append((run.history.val_score[-1], run.model.snapshot()))

    clf = MLPClassifier(
        norm="batch", early_stopping=True, n_iter_no_change=3, max_iter=60, random_state=0
    )
    clf.fit(X, y, callbacks=[Keep()])
    best = max(range(len(snapshots)), key=lambda i: (snapshots[i][0], -i))
    assert best < len(snapshots) - 1  # the last epoch was not the best: something to restore
    kept = clf.network_.snapshot()
    assert {k for k in kept if k.startswith("running_")}  # the statistics are part of it
    for k, v in snapshots[best][1].items():
        np.testing.assert_array_equal(kept[k], v)
