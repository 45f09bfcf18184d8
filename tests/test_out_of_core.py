"""Data larger than memory: a memory-mapped X trains without being read whole, and a Dask
array trains block by block."""

from __future__ import annotations

import json
import re
import tracemalloc
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from handgrad import MLPClassifier, MLPRegressor
from handgrad._mapped import RowReader
from handgrad._validation import check_X


def _data(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


def _on_disk(tmp_path, X) -> np.memmap:
    path = tmp_path / "X.npy"
    np.save(path, X)
    return np.load(path, mmap_mode="r")


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def _peak_bytes(call, *args):
    """``(call(*args), the peak bytes Python allocated while it ran)``."""
    tracemalloc.start()
    try:
        result = call(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_memmap_fit_is_bit_identical_to_the_in_memory_fit(tmp_path, early_stopping, solver):
    X, y = _data(1500, 12)
    Xm = _on_disk(tmp_path, X)
    params = dict(
        hidden_layer_sizes=(16,),
        solver=solver,
        max_iter=4,
        batch_size=64,
        random_state=3,
        early_stopping=early_stopping,
        n_iter_no_change=100,
    )
    a = _fit(MLPClassifier(**params), X, y)
    b = _fit(MLPClassifier(**params), Xm, y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(p, q)
    assert a.loss_curve_ == b.loss_curve_
    assert a.validation_scores_ == b.validation_scores_
    if early_stopping:
        assert len(b.validation_scores_) == 4
        assert 0.4 < b.validation_scores_[-1] <= 1.0


def test_early_stopping_matches_a_fit_on_the_copied_training_rows():
    """The rows given to the loop train exactly as the copied X_tr of the old split."""
    from sklearn.model_selection import train_test_split

    import handgrad.training as training
    from handgrad.network import MLP
    from handgrad.optim import Adam

    X, y = _data(600, 8)
    rows, held_out = train_test_split(np.arange(600), test_size=0.2, random_state=0)

    def trained(**data):
        model = MLP(8, [10], 3, seed=1, dtype=np.float32)
        config = training.TrainingConfig(batch_size=50, max_epochs=3, stopping="validation")
        training.fit(model, optimizer=Adam(1e-2), config=config, seed=2, **data)
        return model

    by_rows = trained(X=X, y=y, rows=rows, validation_rows=held_out)
    copied = trained(X=X[rows], y=y[rows], validation=(X[held_out], y[held_out]))
    for k in copied.params:
        np.testing.assert_array_equal(by_rows.params[k], copied.params[k])


def test_regressor_on_a_memmap(tmp_path):
    X, _ = _data(800, 6)
    y = X[:, :2] @ np.array([1.0, -2.0])
    params = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0, early_stopping=True)
    a = _fit(MLPRegressor(**params), X, y)
    b = _fit(MLPRegressor(**params), _on_disk(tmp_path, X), y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    assert a.validation_scores_ == b.validation_scores_


def test_fit_on_a_memmap_allocates_far_less_than_X(tmp_path):
    X, y = _data(20000, 400)  # 32 MB; batches of 200 rows are 320 kB
    Xm = _on_disk(tmp_path, X)
    del X
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, early_stopping=True, random_state=0)
    _, peak = _peak_bytes(_fit, est, Xm, y)
    assert peak < Xm.nbytes / 4, f"peak {peak} bytes for an X of {Xm.nbytes}"
    assert est.n_iter_ == 1


def test_reading_rows_from_the_file_equals_indexing(tmp_path):
    X, _ = _data(300, 7)
    Xm = _on_disk(tmp_path, X)
    idx = np.array([299, 0, 5, 5, 150])
    with RowReader(Xm) as reader:
        assert reader.reads_file
        np.testing.assert_array_equal(reader.take(idx), X[idx])
        out = np.empty((40, 7), np.float32)
        np.testing.assert_array_equal(reader.read(100, out), X[100:140])
    view = np.asarray(Xm)[10:]  # a view of the memmap, as validate_data returns it
    with RowReader(view) as reader:
        assert reader.reads_file
        np.testing.assert_array_equal(reader.take(np.array([0, 3])), X[[10, 13]])
    with RowReader(X) as reader:
        assert not reader.reads_file
        np.testing.assert_array_equal(reader.take(idx), X[idx])


def test_copy_on_write_memmap_is_read_through_memory(tmp_path):
    X, _ = _data(50, 3)
    np.save(tmp_path / "X.npy", X)
    Xc = np.load(tmp_path / "X.npy", mmap_mode="c")
    Xc[4] = 7.0  # a private change the file does not see
    with RowReader(Xc) as reader:
        assert not reader.reads_file
        np.testing.assert_array_equal(reader.take(np.array([4])), np.full((1, 3), 7.0))


def test_truncated_file_is_a_clear_error(tmp_path):
    X, _ = _data(100, 4)
    Xm = _on_disk(tmp_path, X)
    with RowReader(Xm) as reader:
        with (tmp_path / "X.npy").open("r+b") as f:
            f.truncate(f.seek(0, 2) - 16 * 4 * 10)  # cut the last rows off
        with pytest.raises(ValueError, match="file ended early: row 99"):
            reader.take(np.array([99]))


@pytest.mark.parametrize("bad, kind", [(np.nan, "NaN"), (np.inf, "infinity")])
def test_finiteness_of_a_memmap_is_checked_chunk_by_chunk(tmp_path, monkeypatch, bad, kind):
    import handgrad._validation as validation

    monkeypatch.setattr(validation, "FINITE_CHUNK_BYTES", 10 * 5 * 4)  # 10 rows a chunk
    X, _ = _data(95, 5)
    X[93, 2] = bad
    with pytest.raises(ValueError, match=f"X contains {kind} \\(first at row 93, column 2\\)"):
        check_X(_on_disk(tmp_path, X))
    X[93, 2] = 0
    assert check_X(_on_disk(tmp_path, X)).shape == (95, 5)


def test_finiteness_check_reads_a_memmap_in_small_chunks(tmp_path):
    X, _ = _data(20000, 100)  # 8 MB
    Xm = _on_disk(tmp_path, X)
    checked, peak = _peak_bytes(check_X, Xm)
    assert np.shares_memory(checked, Xm)  # the same memmap, not a copy
    assert peak < Xm.nbytes / 2


# ------------------------------------------------------------------------ Dask arrays
def test_dask_ml_incremental_trains_a_classifier_block_by_block():
    da = pytest.importorskip("dask.array")
    pytest.importorskip("dask_ml")
    import dask
    from dask_ml.wrappers import Incremental

    X, y = _data(1200, 6)
    Xd, yd = da.from_array(X, chunks=300), da.from_array(y, chunks=300)
    est = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, learning_rate_init=0.05)
    with dask.config.set(scheduler="synchronous"):
        inc = Incremental(est, scoring="accuracy", shuffle_blocks=True, random_state=0)
        for _ in range(3):
            inc.partial_fit(Xd, yd, classes=[0, 1, 2])
        predicted = inc.predict(Xd).compute()
    assert inc.estimator_.t_ == 3 * 1200
    assert predicted.shape == (1200,)
    assert np.mean(predicted == y) > 0.8


def test_dask_ml_incremental_trains_a_regressor():
    da = pytest.importorskip("dask.array")
    pytest.importorskip("dask_ml")
    import dask
    from dask_ml.wrappers import Incremental

    X, _ = _data(1000, 4)
    y = X[:, 0] - 0.5 * X[:, 1]
    Xd, yd = da.from_array(X, chunks=250), da.from_array(y, chunks=250)
    est = MLPRegressor(hidden_layer_sizes=(8,), random_state=0, learning_rate_init=0.02)
    with dask.config.set(scheduler="synchronous"):
        inc = Incremental(est, shuffle_blocks=True, random_state=0)
        for _ in range(5):
            inc.partial_fit(Xd, yd)
        predicted = inc.predict(Xd).compute()
    assert inc.estimator_.t_ == 5 * 1000  # every row of every block, five times
    assert predicted.shape == (1000,)
    assert np.mean((predicted - y) ** 2) < 0.2 * np.var(y)


def test_rows_out_of_range_or_not_integers_are_named():
    import handgrad.training as training
    from handgrad.network import MLP
    from handgrad.optim import Adam

    X, y = _data(30, 3)
    model = MLP(3, [4], 3, seed=0, dtype=np.float32)
    with pytest.raises(ValueError, match=r"rows must be row numbers in \[0, 30\), got 0\.\.30"):
        training.fit(model, X, y, optimizer=Adam(), rows=np.array([0, 30]))
    with pytest.raises(ValueError, match="validation_rows must be a non-empty 1-D array"):
        training.fit(model, X, y, optimizer=Adam(), validation_rows=np.array([0.5]))
    with pytest.raises(ValueError, match="give validation or validation_rows, not both"):
        training.fit(
            model, X, y, optimizer=Adam(), validation=(X, y), validation_rows=np.array([1, 2])
        )


# ---------------------------------------------------- predicting and scoring from a file
def _mapped_bytes() -> int:
    """Bytes of mapped files resident in this process (Linux), or skip."""
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("RssFile:"))
    except (OSError, StopIteration):
        pytest.skip("needs /proc/self/status")
    return int(line.split()[1]) * 1024


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_predictions_and_scores_of_a_memmap_equal_those_in_memory(tmp_path, kind):
    X, y = _data(5000, 9)  # more rows than one chunk of scores
    if kind == "binary":
        y = (y > 0).astype(int)
    Xm = _on_disk(tmp_path, X)
    est = _fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0), X, y)
    np.testing.assert_array_equal(est.predict_proba(Xm), est.predict_proba(X))
    np.testing.assert_array_equal(est.predict(Xm), est.predict(X))
    assert est.score(Xm, y) == est.score(X, y)
    reg = _fit(MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, random_state=0), X, X[:, 0])
    np.testing.assert_array_equal(reg.predict(Xm), reg.predict(X))


def test_predicting_from_a_memmap_reads_the_file_without_mapping_it(tmp_path):
    X, y = _data(40000, 200)  # 32 MB
    est = _fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0), X[:500], y[:500])
    Xm = _on_disk(tmp_path, X)
    del X
    before = _mapped_bytes()
    proba = est.predict_proba(Xm)
    assert proba.shape == (40000, 3)
    # Read through the mapping, every page of the file would count here.
    assert _mapped_bytes() - before < Xm.nbytes / 4


def test_a_nan_in_a_memmap_is_named_at_its_row_when_predicting(tmp_path):
    X, y = _data(5000, 4)
    est = _fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0), X, y)
    X[4321, 3] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN \(first at row 4321, column 3\)"):
        est.predict(_on_disk(tmp_path, X))


def test_eval_set_on_a_memmap_scores_as_in_memory(tmp_path):
    X, y = _data(3000, 6)
    X_val, y_val = _data(2500, 6, seed=1)
    params = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(**params).fit(X, y, eval_set=(X_val, y_val))
        b = MLPClassifier(**params).fit(X, y, eval_set=(_on_disk(tmp_path, X_val), y_val))
    assert a.history_.val_score == b.history_.val_score
    assert len(b.history_.val_score) == 3
    X_val[7, 1] = np.inf
    np.save(tmp_path / "bad.npy", X_val)
    with pytest.raises(ValueError, match=r"X_val contains infinity \(first at row 7, column 1\)"):
        b.fit(X, y, eval_set=(np.load(tmp_path / "bad.npy", mmap_mode="r"), y_val))


def test_fitting_many_classes_allocates_a_few_times_y_not_c_times():
    """Multi-class labels train as (N,) class indices: a one-hot (N, C) matrix would be C
    times y's size, and the shuffle order is one (N,) array."""
    rng = np.random.default_rng(0)
    n, C = 200_000, 20
    y = rng.integers(0, C, n)  # 1.6 MB; one-hot it would be 32 MB
    X = rng.standard_normal((n, 2), dtype=np.float32)
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, batch_size=1000, random_state=0)
    _, peak = _peak_bytes(_fit, est, X, y)
    assert est.classes_.tolist() == list(range(C))
    assert peak < 4 * y.nbytes, f"peak {peak} bytes for y of {y.nbytes}"


# ------------------------------------------------------ the command line on a .npy file
def _invoke(*args, ok=True):
    from click.testing import CliRunner

    from handgrad.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + str(result.exception)
    return result


@pytest.fixture
def npy_pair(tmp_path):
    X, y = _data(1200, 6)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "xy.npz", X=X, y=y)
    return tmp_path


def test_cli_trains_a_npy_pair_as_the_same_data_in_an_npz_file(npy_pair):
    """Split by row numbers, trained from the file: the run of the .npz (in memory,
    without preprocessing) to the bit."""
    from handgrad.bundle import load_bundle
    from handgrad.runs import read_json

    common = ["--epochs", "3", "--hidden", "8", "--batch-size", "50", "-q"]
    _invoke(
        "train",
        "--data",
        npy_pair / "X.npy",
        "--labels",
        npy_pair / "y.npy",
        "--out",
        npy_pair / "mapped",
        *common,
    )
    _invoke(
        "train",
        "--data",
        npy_pair / "xy.npz",
        "--preprocessing",
        "none",
        "--out",
        npy_pair / "memory",
        *common,
    )
    mapped, memory = (read_json(npy_pair / r / "metrics.json") for r in ("mapped", "memory"))
    assert mapped["final"] | {"seconds": 0} == memory["final"] | {"seconds": 0}
    assert mapped["history"] == memory["history"]
    assert mapped["confusion_matrix"] == memory["confusion_matrix"]
    assert mapped["sizes"] == {"train": 810, "validation": 90, "test": 300}
    assert mapped["config"]["labels"] == str(npy_pair / "y.npy")
    assert mapped["config"]["preprocessing"] == "none"
    fingerprint = mapped["data"]["fingerprint"]
    assert fingerprint["size"] == sum((npy_pair / f).stat().st_size for f in ("X.npy", "y.npy"))
    a, b = (load_bundle(npy_pair / r / "model.safetensors") for r in ("mapped", "memory"))
    for p, q in zip(a.estimator.coefs_, b.estimator.coefs_, strict=True):
        np.testing.assert_array_equal(p, q)
    # the range of the training rows, learnt a chunk at a time from the file
    np.testing.assert_array_equal(a.model[0].data_min_, b.model[0].data_min_)
    np.testing.assert_array_equal(a.model[0].data_max_, b.model[0].data_max_)
    assert a.model[0].kind == "none"
    # evaluate scores the same test rows; predict reads the .npy like any input
    scored = [
        _invoke("evaluate", npy_pair / r / "model.safetensors", "--json").output
        for r in ("mapped", "memory")
    ]
    accuracy = [json.loads(s)["accuracy"] for s in scored]
    assert accuracy[0] == accuracy[1] == mapped["final"]["test_accuracy"]
    assert json.loads(scored[0])["n_samples"] == 300
    everything = _invoke(
        "evaluate", npy_pair / "mapped" / "model.safetensors", "--split", "all", "--json"
    )
    assert json.loads(everything.output)["n_samples"] == 1200
    _invoke(
        "predict",
        npy_pair / "mapped" / "model.safetensors",
        npy_pair / "X.npy",
        "-o",
        npy_pair / "p.csv",
    )
    predicted = np.loadtxt(npy_pair / "p.csv", delimiter=",", skiprows=1, usecols=1)
    np.testing.assert_array_equal(predicted, a.estimator.predict(np.load(npy_pair / "X.npy")))


def test_cli_resumes_a_npy_run_and_reads_labels_from_a_csv(npy_pair):
    from handgrad.runs import read_json

    y = np.load(npy_pair / "y.npy")
    (npy_pair / "y.csv").write_text("label\n" + "\n".join(map(str, y)) + "\n")
    common = ["--data", npy_pair / "X.npy", "--labels", npy_pair / "y.csv", "-q"]
    _invoke(
        "train", *common, "--epochs", "4", "--checkpoint-every", "1", "--out", npy_pair / "whole"
    )
    _invoke(
        "train", *common, "--epochs", "2", "--checkpoint-every", "1", "--out", npy_pair / "part"
    )
    _invoke("train", "--resume", npy_pair / "part", "--epochs", "4", "-q")
    whole, resumed = (read_json(npy_pair / r / "metrics.json") for r in ("whole", "part"))
    assert resumed["history"]["loss"] == whole["history"]["loss"]
    assert len(whole["history"]["loss"]) == 4
    np.save(npy_pair / "X.npy", np.load(npy_pair / "X.npy")[::-1].copy())
    changed = _invoke("train", "--resume", npy_pair / "part", "--epochs", "5", ok=False)
    assert "the data changed since" in changed.output


def test_cli_regression_on_a_npy_pair(npy_pair):
    from handgrad.runs import read_json

    X = np.load(npy_pair / "X.npy")
    np.save(npy_pair / "t.npy", X[:, 0] * 3.0 + X[:, 1])
    _invoke(
        "train",
        "--data",
        npy_pair / "X.npy",
        "--labels",
        npy_pair / "t.npy",
        "--task",
        "regression",
        "--epochs",
        "30",
        "--out",
        npy_pair / "reg",
        "-q",
    )
    final = read_json(npy_pair / "reg" / "metrics.json")["final"]
    assert final["test_r2"] > 0.8
    report = _invoke("evaluate", npy_pair / "reg" / "model.safetensors", "--json").output
    assert json.loads(report)["r2"] == pytest.approx(final["test_r2"], abs=1e-12)


@pytest.mark.parametrize(
    "x, labels, extra, message",
    [
        ("X.npy", None, [], r"--data \S*X\.npy needs its labels: give --labels"),
        ("X3d.npy", "y.npy", [], r"X3d\.npy must hold a 2-D array .* shape \(1200, 3, 2\)"),
        ("Xint.npy", "y.npy", [], r"Xint\.npy holds int64; .* float32 or float64"),
        ("X.npy", "short.npy", [], r"short\.npy holds 10 labels, but X\.npy has 1200 rows"),
        ("X.npy", "y.npy", ["--dtype", "float64"], r"X\.npy holds float32; give --dtype float32"),
        ("X.npy", "y.npy", ["--preprocessing", "standardize"], r"--preprocessing standardize"),
        ("xy.npz", "y.npy", [], r"--labels goes with a \.npy --data file"),
    ],
)
def test_cli_npy_errors_are_one_line(npy_pair, x, labels, extra, message):
    np.save(npy_pair / "X3d.npy", np.zeros((1200, 3, 2), np.float32))
    np.save(npy_pair / "Xint.npy", np.zeros((1200, 6), np.int64))
    np.save(npy_pair / "short.npy", np.zeros(10, int))
    args = ["train", "--data", npy_pair / x, "--out", npy_pair / "run", "-q", *extra]
    result = _invoke(*args, *(["--labels", npy_pair / labels] if labels else []), ok=False)
    assert result.exit_code == 1
    assert re.search(message, result.output), result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (npy_pair / "run").exists()


def test_evaluating_a_npy_run_reads_the_file_without_mapping_it(tmp_path):
    from handgrad.bundle import evaluate, load_bundle

    X, y = _data(40000, 200)  # 32 MB
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    args = ["--data", tmp_path / "X.npy", "--labels", tmp_path / "y.npy", "--hidden", "4"]
    _invoke("train", *args, "--epochs", "1", "--batch-size", "500", "--out", tmp_path / "r", "-q")
    bundle = load_bundle(tmp_path / "r" / "model.safetensors")
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    rows = np.array([39999, 0, 17, 17, 2048])
    np.testing.assert_array_equal(bundle.predict_rows(Xm, rows), bundle.predict(X[rows]))
    before = _mapped_bytes()
    report = evaluate(bundle, Xm, y, name="X.npy")
    assert _mapped_bytes() - before < Xm.nbytes / 4
    assert report["n_samples"] == 40000
    assert report["accuracy"] == pytest.approx(np.mean(bundle.predict(X) == y), abs=0)


def test_search_on_a_npy_pair_ranks_as_the_same_data_in_an_npz_file(npy_pair):
    """``search --data X.npy --labels y.npy``: the same split, folds and ranked table as
    the .npz of the same arrays (its rows read in, as the folds index them)."""
    from handgrad.runs import read_json

    common = ["--iter", "2", "--cv", "2", "--epochs", "2", "--batch-size", "100"]
    common += ["--hidden-choices", "8,16", "--preprocessing", "none"]
    _invoke(
        "search",
        "--data",
        npy_pair / "X.npy",
        "--labels",
        npy_pair / "y.npy",
        "--out",
        npy_pair / "mapped",
        *common,
    )
    _invoke("search", "--data", npy_pair / "xy.npz", "--out", npy_pair / "memory", *common)
    mapped, memory = (read_json(npy_pair / r / "metrics.json") for r in ("mapped", "memory"))
    timeless = [
        [{k: v for k, v in r.items() if k != "fit_seconds"} for r in m["search"]["results"]]
        for m in (mapped, memory)
    ]
    assert timeless[0] == timeless[1] and len(timeless[0]) == 2
    assert mapped["final"] | {"seconds": 0} == memory["final"] | {"seconds": 0}
    assert mapped["config"]["labels"] == str(npy_pair / "y.npy")
