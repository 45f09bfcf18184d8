"""The one training loop: stopping rules, best-weights restore, divergence, Ctrl-C,
callbacks, step limits and the history it keeps."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from handgrad import MLP
from handgrad.errors import TrainingDivergedError
from handgrad.optim import LBFGS, SGD, Adam, Adaptive
from handgrad.training import Callback, Run, TrainingConfig, accuracy, fit


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


def _model(dtype=np.float64):
    return MLP(5, (8,), 3, seed=0, dtype=dtype)


class Recorder(Callback):
    """Keeps a copy of the weights and the validation score at every epoch's end."""

    def __init__(self, interrupt_at: int | None = None, stop_at: int | None = None):
        self.calls: list[str] = []
        self.params: list[dict[str, np.ndarray]] = []
        self.interrupt_at, self.stop_at = interrupt_at, stop_at

    def on_train_begin(self, run):
        self.calls.append("begin")

    def on_epoch_end(self, run):
        self.calls.append("epoch")
        self.params.append({k: v.copy() for k, v in run.model.params.items()})
        if len(self.params) == self.interrupt_at:
            raise KeyboardInterrupt
        return len(self.params) == self.stop_at

    def on_train_end(self, run):
        self.calls.append("end")


def test_early_stopping_restores_the_best_weights(data):
    X, y = data
    model, rec = _model(), Recorder()
    config = TrainingConfig(
        batch_size=16, max_epochs=60, stopping="validation", n_iter_no_change=4, tol=0.0
    )
    hist = fit(
        model,
        X[:60],
        y[:60],
        optimizer=SGD(learning_rate_init=0.5),
        config=config,
        validation=(X[60:], y[60:]),
        seed=0,
        callbacks=[rec],
    )
    best = int(np.argmax(hist.val_score))  # the first epoch with the highest score
    assert best < len(hist.val_score) - 1, "the test needs a run that got worse later"
    for k, v in model.params.items():
        assert_array_equal(v, rec.params[best][k])
    assert hist.best_val_score == hist.val_score[best] and hist.stop_reason == "early_stopping"
    assert len(rec.params) == hist.epochs  # callbacks saw the stopping epoch too
    S = model.forward(X[60:])[0]
    assert accuracy(model, S, y[60:]) == hist.best_val_score


def test_weighted_validation_score(data):
    X, y = data
    model = _model()
    w_val = np.zeros(30)
    w_val[:3] = 1.0
    hist = fit(
        model,
        X[:60],
        y[:60],
        optimizer=SGD(learning_rate_init=0.1),
        config=TrainingConfig(batch_size=30, max_epochs=1, stopping="validation"),
        validation=(X[60:], y[60:], w_val),
        seed=0,
    )
    right = model.forward(X[60:63])[0].argmax(axis=1) == y[60:63]
    assert hist.val_score == [pytest.approx(right.mean())]


def test_divergence_raises_and_keeps_finite_weights(data):
    X, y = data
    model, rec = _model(), Recorder()
    # No NumPy warning on the way (pytest turns handgrad's RuntimeWarnings into errors)
    with pytest.raises(TrainingDivergedError, match=r"non-finite in epoch (\d+)") as info:
        fit(
            model,
            X * 1e3,
            y,
            optimizer=SGD(learning_rate_init=1e30),
            config=TrainingConfig(batch_size=10, max_epochs=20),
            seed=0,
            callbacks=[rec],
        )
    assert isinstance(info.value, FloatingPointError)
    epoch = int(re.search(r"epoch (\d+)", str(info.value)).group(1))
    assert all(np.isfinite(v).all() for v in model.params.values())
    assert len(rec.params) == epoch - 1  # epochs that finished before it diverged
    if rec.params:  # the weights of the last finished epoch were put back
        for k, v in model.params.items():
            assert_array_equal(v, rec.params[-1][k])


class _Blowup(Recorder):
    """A Recorder that raises the learning rate to 1e6 after epoch 3: epoch 4 diverges."""

    def on_epoch_end(self, run):
        super().on_epoch_end(run)
        if run.history.epochs == 3:
            run.optimizer.learning_rate = 1e6


def test_divergence_with_early_stopping_ends_with_the_best_weights():
    """As scikit-learn's: no error; the diverged epoch scores NaN and the weights of the
    best validation score come back (then the run can go on)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 4))
    y = (X @ [1.0, -2.0, 0.5, 0.0] + 0.1 * rng.standard_normal(150))[:, None]
    model, rec = MLP(4, (8,), 1, head="identity", seed=0), _Blowup()
    config = TrainingConfig(batch_size=20, max_epochs=30, stopping="validation")
    hist = fit(
        model,
        X[:120],
        y[:120],
        optimizer=SGD(learning_rate_init=0.02, momentum=0.0),
        config=config,
        validation=(X[120:], y[120:]),
        seed=0,
        callbacks=[rec],
    )
    assert hist.stop_reason == "diverged" and hist.epochs == 4 and len(rec.params) == 3
    assert all(math.isfinite(v) for v in hist.val_score[:3]) and math.isnan(hist.val_score[3])
    assert math.isnan(hist.loss[3]) and len(hist.loss) == len(hist.learning_rate) == 4
    best = int(np.argmax(hist.val_score[:3]))
    assert hist.best_val_score == hist.val_score[best]
    for k, v in model.params.items():
        assert_array_equal(v, rec.params[best][k])
    assert hist.steps == 3 * 6  # the diverged epoch's steps were taken back
    with pytest.raises(TrainingDivergedError, match=r"non-finite in epoch 4 \(step 2[0-4]\)"):
        fit(  # without early stopping the same run raises (the weights of epoch 3 kept)
            MLP(4, (8,), 1, head="identity", seed=0),
            X[:120],
            y[:120],
            optimizer=SGD(learning_rate_init=0.02, momentum=0.0),
            config=TrainingConfig(batch_size=20, max_epochs=30, stopping="loss"),
            seed=0,
            callbacks=[_Blowup()],
        )


def test_ctrl_c_keeps_the_weights(data):
    X, y = data
    model, rec = _model(), Recorder(interrupt_at=3)
    hist = fit(
        model,
        X,
        y,
        optimizer=Adam(learning_rate_init=0.01),
        config=TrainingConfig(batch_size=30, max_epochs=10),
        seed=0,
        callbacks=[rec],
    )
    assert hist.stop_reason == "interrupted" and rec.calls == ["begin", *["epoch"] * 3, "end"]
    assert all(np.isfinite(v).all() for v in model.params.values())
    for k, v in model.params.items():  # epoch 3 had finished: its weights are kept
        assert_array_equal(v, rec.params[2][k])


def test_ctrl_c_mid_epoch_goes_back_to_the_last_finished_epoch(data):
    X, y = data
    model, rec = _model(), Recorder()
    step, calls = model.loss_and_gradients, []

    def interrupted_step(*args):
        calls.append(1)
        if len(calls) == 9:  # batch 3 of epoch 3 (three batches of 30 per epoch)
            raise KeyboardInterrupt
        return step(*args)

    model.loss_and_gradients = interrupted_step
    opt = Adam(learning_rate_init=0.01)
    run = Run(model, opt, np.random.default_rng(0))
    hist = fit(
        model,
        X,
        y,
        optimizer=opt,
        config=TrainingConfig(batch_size=30, max_epochs=10, engine="reference"),
        callbacks=[rec],
        run=run,
    )
    assert hist.stop_reason == "interrupted" and hist.epochs == 2
    # The whole run is back at the end of epoch 2: weights, Adam's state, the counters
    # and the shuffling generator, so that it can be continued consistently.
    assert hist.steps == 6 and len(hist.step_loss) == 6 and opt.t == 6
    for k, v in model.params.items():
        assert_array_equal(v, rec.params[1][k])
    # Continue (the patched step passes through from now on: both runs take the
    # reference engine, so the comparison can be bit for bit).
    reference = Run(_model(), Adam(learning_rate_init=0.01), np.random.default_rng(0))
    fit(
        reference.model,
        X,
        y,
        optimizer=reference.optimizer,
        run=reference,
        config=TrainingConfig(batch_size=30, max_epochs=3, engine="reference"),
    )
    config = TrainingConfig(batch_size=30, max_epochs=1, engine="reference")
    fit(model, X, y, optimizer=opt, config=config, run=run)
    for k, v in model.params.items():  # continuing gives what an uninterrupted run gives
        assert_array_equal(v, reference.model.params[k])


def test_callbacks_are_called_and_can_stop(data):
    X, y = data
    rec = Recorder(stop_at=2)
    hist = fit(
        _model(),
        X,
        y,
        optimizer=SGD(learning_rate_init=0.1),
        config=TrainingConfig(batch_size=30, max_epochs=10),
        seed=0,
        callbacks=[rec],
    )
    assert rec.calls == ["begin", "epoch", "epoch", "end"]
    assert hist.epochs == 2 and hist.stop_reason == "callback"


def test_max_steps_counts_minibatches(data):
    X, y = data
    hist = fit(
        _model(),
        X,
        y,
        optimizer=SGD(learning_rate_init=0.1),
        config=TrainingConfig(batch_size=40, max_epochs=None, max_steps=7),
        seed=0,
    )
    assert hist.steps == 7 and len(hist.step_loss) == 7  # 3 batches per epoch
    assert hist.stop_reason == "max_steps" and hist.epochs == 3  # the third is partial


def test_history_lists_grow_per_epoch_and_across_calls(data):
    X, y = data
    model = _model()
    opt = SGD(learning_rate_init=0.1, momentum=0.9)
    config = TrainingConfig(batch_size=32, max_epochs=4, stopping="none")
    run = Run(model, opt, np.random.default_rng(0))
    fit(model, X, y, optimizer=opt, config=config, run=run)
    hist = fit(model, X, y, optimizer=opt, config=config, run=run)
    assert hist is run.history and hist.epochs == 8 and hist.steps == 8 * 3
    assert len(hist.loss) == len(hist.train_score) == len(hist.learning_rate) == 8
    assert len(hist.step_loss) == 24 and hist.val_score == []
    assert hist.samples_seen == 8 * 90
    assert all(0.0 <= s <= 1.0 for s in hist.train_score)
    assert hist.loss[-1] < hist.loss[0]
    # the epoch loss is the size-weighted mean of its minibatch losses (32, 32, 26 rows)
    assert hist.loss[0] == pytest.approx(np.dot(hist.step_loss[:3], [32, 32, 26]) / 90)


def test_loss_plateau_stops_like_scikit_learn(data):
    X, y = data
    hist = fit(
        _model(),
        X,
        y,
        optimizer=SGD(learning_rate_init=0.01),
        config=TrainingConfig(batch_size=30, max_epochs=50, tol=1e9, n_iter_no_change=2),
        seed=0,
    )
    # epoch 1 improves on ∞; epochs 2, 3, 4 do not, and 3 > n_iter_no_change stops
    assert hist.epochs == 4 and hist.stop_reason == "converged"


def test_adaptive_schedule_lowers_the_rate_instead_of_stopping(data):
    X, y = data
    opt = SGD(learning_rate_init=0.01, schedule=Adaptive())
    hist = fit(
        _model(),
        X,
        y,
        optimizer=opt,
        config=TrainingConfig(batch_size=30, max_epochs=7, tol=1e9, n_iter_no_change=2),
        seed=0,
    )
    assert hist.epochs == 7 and hist.learning_rate[-1] == pytest.approx(0.002)
    assert hist.learning_rate[:4] == [0.01] * 4


def test_same_seed_same_run_bit_for_bit(data):
    X, y = data
    runs = []
    for _ in range(2):
        model = _model(np.float32)
        fit(
            model,
            X,
            y,
            optimizer=Adam(learning_rate_init=0.01),
            config=TrainingConfig(batch_size=16, max_epochs=3),
            seed=7,
        )
        runs.append(model.params)
    for k in runs[0]:
        assert runs[0][k].dtype == np.float32
        assert runs[0][k].tobytes() == runs[1][k].tobytes()


def test_history_round_trips_through_a_dict(data):
    X, y = data
    hist = fit(_model(), X, y, optimizer=SGD(), config=TrainingConfig(max_epochs=2), seed=0)
    back = type(hist).from_dict(hist.to_dict())
    assert back == hist and math.isinf(back.best_val_score)


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("make_optimizer", [lambda: SGD(0.1), lambda: Adam(0.01), LBFGS])
def test_the_engine_setting_decides_which_step_runs(data, engine, make_optimizer):
    X, y = data
    model, calls = _model(), []
    step = model.loss_and_gradients

    def counted_step(*args):
        calls.append(1)
        return step(*args)

    model.loss_and_gradients = counted_step  # seen by the reference engine only
    config = TrainingConfig(batch_size=30, max_epochs=2, engine=engine)
    hist = fit(model, X, y, optimizer=make_optimizer(), config=config, seed=0)
    assert hist.epochs >= 1 and all(np.isfinite(v).all() for v in model.params.values())
    assert (len(calls) > 0) == (engine == "reference")


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match=r"engine must be one of fast, reference, but got 'slow'"):
        TrainingConfig(engine="slow")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
def test_float32_loss_curve_is_scikit_learns_from_the_same_weights(kind):
    """scikit-learn clips P to [ε, 1 − ε] before the log; in float32 (ε = 1.2e-7) the
    confidently wrong rows of these large inputs hit the clip from the first epoch."""
    from sklearn.datasets import make_blobs
    from sklearn.neural_network import MLPClassifier as SkMLP

    from handgrad import MLPClassifier

    X, y = make_blobs(n_samples=120, centers=3, n_features=4, random_state=0, cluster_std=0.5)
    X = (X * 10).astype(np.float32)
    y[::15] = (y[::15] + 1) % 3  # some rows the network gets confidently wrong
    if kind == "binary":
        y = (y == 1).astype(int)
    elif kind == "multilabel":
        y = np.stack([y == 0, y != 1, y == 2], axis=1).astype(int)
    common = dict(
        hidden_layer_sizes=(7, 5),
        solver="sgd",
        momentum=0.9,
        alpha=0.0,
        batch_size=32,
        shuffle=False,
        random_state=0,
        warm_start=True,
        max_iter=1,
    )  # the same start as tests/test_estimator.py does it
    ours = MLPClassifier(**common, learning_rate_init=1e-300).fit(X, y)
    theirs = SkMLP(**common).fit(X, y)
    theirs.coefs_ = [W.copy() for W in ours.coefs_]
    theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
    for est in (ours, theirs):
        est.set_params(learning_rate_init=0.1, max_iter=15).fit(X, y)
    assert ours.coefs_[0].dtype == np.float32
    assert max(theirs.loss_curve_[1:]) > 1.0  # the clip mattered (it is −log ε = 15.9 a row)
    np.testing.assert_allclose(ours.loss_curve_[1:], theirs.loss_curve_[1:], rtol=2e-6)


# ------------------------------------------------------------------------ memory
def test_the_estimator_refuses_a_network_too_large_for_memory():
    """``--hidden 1000000000``: one ValueError naming the size and its parts, before
    anything is allocated (it was NumPy's MemoryError)."""
    from handgrad import MLPClassifier

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((50, 100)), rng.integers(0, 3, 50)
    with pytest.raises(ValueError) as info:
        MLPClassifier(hidden_layer_sizes=(10**9,)).fit(X, y)
    message = str(info.value)
    assert message.startswith("training the network 100→1000000000→3 (float64) needs ")
    assert "the weights 775 GiB" in message and "adam's state 4.54 TiB" in message
    assert "buffers for batches of 50 rows" in message and "more than this machine's" in message


def test_fit_checks_weights_optimizer_and_buffers_together(data, monkeypatch):
    """Weights that fit, but not with Adam's moments and the batch buffers: refused
    before training starts, the weights untouched."""
    import handgrad._validation as validation
    from handgrad.training import memory_needed

    X, y = data
    model = _model()
    before = {k: v.copy() for k, v in model.params.items()}
    parts = memory_needed(model.layer_sizes, 30, dtype=np.float64, optimizer=Adam())
    assert parts["the weights"] == 8 * (6 * 8 + 9 * 3)
    assert parts["adam's state"] == 6 * parts["the weights"]
    monkeypatch.setattr(validation, "total_memory", lambda: sum(parts.values()) - 1)
    with pytest.raises(ValueError, match=r"needs [\d.]+ KiB \(the weights 600 bytes, "):
        fit(model, X, y, optimizer=Adam(), config=TrainingConfig(batch_size=30))
    for k, v in model.params.items():
        assert_array_equal(v, before[k])
    monkeypatch.setattr(validation, "total_memory", lambda: sum(parts.values()))
    hist = fit(model, X, y, optimizer=Adam(), config=TrainingConfig(batch_size=30, max_epochs=1))
    assert hist.epochs == 1


def test_memory_is_checked_once_per_fit(data, monkeypatch):
    """One training check per fit: a new estimator's run before its network is
    allocated (train does not repeat it), a run that has trained by train (its next
    batches may be larger), and fit's own run by fit."""
    import handgrad._validation as validation
    from handgrad import MLPClassifier

    asked = []
    check = validation.check_memory

    def counting(nbytes, what, *args):
        asked.append(what.split(" (")[0])
        check(nbytes, what, *args)

    monkeypatch.setattr(validation, "check_memory", counting)
    monkeypatch.setattr("handgrad.training.memory.check_memory", counting)
    X, y = data
    est = MLPClassifier((5,), max_iter=2, random_state=0)
    for fit_once, network in (
        (lambda: est.fit(X, y), "5→5→3"),
        (lambda: est.set_params(warm_start=True, batch_size=30).fit(X, y), "5→5→3"),
        (lambda: est.partial_fit(X, y), "5→5→3"),
        (lambda: fit(_model(), X, y, optimizer=Adam(), config=TrainingConfig()), "5→8→3"),
    ):
        asked.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: two epochs on purpose
            fit_once()
        training_checks = [w for w in asked if w.startswith("training the network")]
        assert training_checks == [f"training the network {network}"]


# ------------------------------------------------- what a batch is, what a step is
def test_every_batch_source_gives_the_rows_of_the_epochs_order(tmp_path):
    """Gathered into the fast engine's buffers or taken as new arrays, from X in memory
    or read from its file: the batch of positions ``order[start:stop]`` is the rows
    ``rows[order[start:stop]]`` of X, T and w, with their weight sum."""
    from handgrad.training import TrainingData, batch_source
    from handgrad.workspace import Workspace

    rng = np.random.default_rng(0)
    X, y, w = rng.standard_normal((30, 4)), rng.integers(0, 3, 30), rng.random(30)
    np.save(tmp_path / "X.npy", X)
    model, rows = MLP(4, (5,), 3, seed=0), np.arange(3, 30, 2)
    order = rng.permutation(len(rows))
    for X_source in (X, np.load(tmp_path / "X.npy", mmap_mode="r")):
        data = TrainingData.of(model, X_source, y, w, rows)
        for workspace in (
            Workspace((4, 5, 3), 4, activation="relu", head="softmax", dtype=np.float64),
            None,
        ):
            with batch_source(data, 4, workspace) as source:
                source.begin_epoch(order)
                for start in range(0, len(rows), 4):
                    stop = min(start + 4, len(rows))
                    Xb, Tb, wb, n_weight = source.batch(start, stop)
                    idx = rows[order[start:stop]]
                    assert_array_equal(Xb, X[idx])
                    assert_array_equal(Tb, y[idx])
                    assert_array_equal(wb, w[idx])
                    assert n_weight == float(w[idx].sum())


def test_rows_per_step_are_a_batch_or_for_lbfgs_every_row():
    from handgrad.training import step_rows

    assert step_rows(1000, 200, SGD(0.1)) == 200
    assert step_rows(150, 200, Adam()) == 150
    assert step_rows(1000, 200, LBFGS()) == 1000


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_train_on_checked_data_is_fit(data, engine):
    """``train`` (checked data, held-out data that scores itself) is what ``fit`` calls:
    the same weights and history, bit for bit."""
    from handgrad.training import TrainingData, held_out, train

    X, y = data
    config = TrainingConfig(batch_size=16, max_epochs=4, stopping="validation", engine=engine)
    by_fit = _model()
    h1 = fit(
        by_fit,
        X[:70],
        y[:70],
        optimizer=Adam(0.01),
        config=config,
        seed=3,
        validation=(X[70:], y[70:]),
    )
    by_train = _model()
    checked = TrainingData.of(by_train, X, y, rows=np.arange(70))
    scored = held_out(by_train, checked, validation_rows=np.arange(70, 90))
    h2 = train(Run(by_train, Adam(0.01), np.random.default_rng(3)), checked, config, scored)
    assert h2.loss == h1.loss and h2.val_score == h1.val_score and len(h2.val_score) == 4
    for k, v in by_fit.params.items():
        assert_array_equal(by_train.params[k], v)
