"""The estimator's public doors for the command line: ``fit(eval_set=, callbacks=,
resume=)``, ``history_`` and ``network_``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.preprocessing import StandardScaler

from handgrad import MLP, MLPClassifier
from handgrad.callbacks import Checkpoint
from handgrad.state import load_run
from handgrad.training import Callback, History

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

PARAMS = dict(
    hidden_layer_sizes=(6,), max_iter=8, batch_size=32, random_state=0, n_iter_no_change=100
)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=150, centers=3, n_features=4, random_state=1)
    return StandardScaler().fit_transform(X), y


class StopAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, run):
        return run.history.epochs == self.epoch


def test_history_and_network_are_the_runs(blobs):
    X, y = blobs
    clf = MLPClassifier(**PARAMS)
    for name in ("history_", "network_"):
        with pytest.raises(AttributeError, match=f"no attribute '{name}' \\(it is set by fit\\)"):
            getattr(clf, name)
    clf.fit(X, y)
    assert isinstance(clf.history_, History) and isinstance(clf.network_, MLP)
    assert clf.history_.epochs == clf.n_iter_ == 8
    assert clf.history_.loss == clf.loss_curve_
    assert clf.history_.samples_seen == clf.t_ == 8 * len(X)
    assert clf.history_.stop_reason == "max_epochs"
    assert clf.network_.layer_sizes == (4, 6, 3)
    assert np.shares_memory(clf.network_.params["W1"], clf.coefs_[0])
    assert np.array_equal(clf.network_.predict(X), np.argmax(clf.predict_proba(X), axis=1))


def test_eval_set_is_scored_every_epoch_without_early_stopping(blobs):
    X, y = blobs
    Xv, yv = X[::3], y[::3]
    clf = MLPClassifier(**PARAMS).fit(X, y, eval_set=(Xv, yv))
    assert len(clf.history_.val_score) == 8
    assert clf.history_.val_score[-1] == pytest.approx(clf.score(Xv, yv))
    assert clf.t_ == 8 * len(X)  # nothing held out
    assert clf.validation_scores_ is None  # as scikit-learn: only with early_stopping


def test_eval_set_replaces_the_early_stopping_split(blobs):
    X, y = blobs
    Xv, yv = X[::3], y[::3]
    params = {**PARAMS, "n_iter_no_change": 2, "max_iter": 40, "learning_rate_init": 0.05}
    clf = MLPClassifier(early_stopping=True, **params).fit(X, y, eval_set=(Xv, yv))
    assert clf.t_ == clf.n_iter_ * len(X)  # all of X trains: no validation_fraction split
    assert clf.validation_scores_ == clf.history_.val_score
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # the best weights are restored, so the eval set scores the best score again
    assert clf.score(Xv, yv) == pytest.approx(clf.best_validation_score_)
    split = MLPClassifier(early_stopping=True, **params).fit(X, y)
    assert split.t_ == split.n_iter_ * 135  # 10 % of 150 rows held out


@pytest.mark.parametrize(
    ("eval_set", "message"),
    [
        ([np.zeros((2, 4))], "eval_set must be a pair \\(X_val, y_val\\), got list of length 1"),
        (np.zeros((2, 4)), "eval_set must be a pair \\(X_val, y_val\\), got ndarray"),
    ],
)
def test_a_malformed_eval_set_is_refused(blobs, eval_set, message):
    X, y = blobs
    with pytest.raises(TypeError, match=message):
        MLPClassifier(max_iter=1).fit(X, y, eval_set=eval_set)


def test_resume_from_a_checkpoint_file_is_bit_identical(blobs, tmp_path):
    X, y = blobs
    whole = MLPClassifier(**PARAMS).fit(X, y)
    path = tmp_path / "checkpoint.safetensors"
    MLPClassifier(**PARAMS).fit(X, y, callbacks=[Checkpoint(path, every=2), StopAt(5)])
    run, _ = load_run(path)
    assert run.history.epochs == 4  # the last checkpoint before the stop
    resumed = MLPClassifier(**PARAMS).fit(X, y, resume=run)
    assert resumed.n_iter_ == 4 and resumed.history_.epochs == 8
    assert resumed.loss_curve_ == whole.loss_curve_
    for a, b in zip(
        resumed.coefs_ + resumed.intercepts_, whole.coefs_ + whole.intercepts_, strict=True
    ):
        assert a.tobytes() == b.tobytes()


def test_resume_takes_only_a_run(blobs):
    X, y = blobs
    with pytest.raises(TypeError, match=r"resume must be a handgrad\.training\.Run .* got str"):
        MLPClassifier(max_iter=1).fit(X, y, resume="checkpoint.safetensors")
