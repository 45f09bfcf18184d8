"""Run folders and the training command: nothing good replaced, nothing half-written,
defaults that suit the data, the configuration that was trained, locks and modes."""

import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_iris

import handgrad.runs as runs
from handgrad._atomic import write_atomically
from handgrad._split import stratified_split
from handgrad.bundle import load_bundle
from handgrad.cli import main
from handgrad.errors import TrainingDivergedError
from handgrad.runs import RunConfig, read_json
from handgrad.training.sources import GatheredBatches

SMALL = ["--data", "iris", "--epochs", "3", "--hidden", "8", "--quiet"]


def invoke(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _error_line(result):
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("handgrad: error: ")
    return line


@pytest.fixture
def good(tmp_path):
    """A finished run folder and its files' bytes."""
    folder = tmp_path / "good"
    invoke("train", *SMALL, "--checkpoint-every", "1", "--out", folder)
    return folder, _contents(folder)


def _iris_csv(path, extra_rows=(), header="a,b,c,d,species"):
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    lines = [header] if header else []
    lines += [
        ",".join([*(f"{v:g}" for v in row), name]) for row, name in zip(X, names, strict=True)
    ]
    lines += list(extra_rows)
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------ 12.3 never replaced silently
def test_existing_run_folder_is_refused_without_overwrite(good):
    folder, before = good
    result = invoke("train", *SMALL, "--out", folder, ok=False)
    assert result.exit_code == 1
    line = _error_line(result)
    assert f"run folder {folder} already exists" in line
    assert "--overwrite" in line and "--resume" in line
    assert _contents(folder) == before
    invoke("train", *SMALL, "--seed", "1", "--out", folder, "--overwrite")
    assert _contents(folder)["model.safetensors"] != before["model.safetensors"]


def test_named_run_is_refused_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    invoke("train", *SMALL, "--name", "mine")
    line = _error_line(invoke("train", *SMALL, "--name", "mine", ok=False))
    assert "runs/mine already exists" in line and "--overwrite" in line


def test_ctrl_c_in_the_first_epoch_saves_nothing_over_a_good_run(good, monkeypatch):
    folder, before = good

    def interrupt(*args):
        raise KeyboardInterrupt

    # the first batch of the first epoch, whichever engine takes it: batch by batch, or
    # the whole epoch's rows at once (the compiled engine)
    monkeypatch.setattr(GatheredBatches, "batch", interrupt)
    monkeypatch.setattr(GatheredBatches, "in_memory", interrupt)
    result = invoke("train", *SMALL, "--out", folder, "--overwrite", ok=False)
    assert result.exit_code == 130
    assert "interrupted before an epoch finished; nothing was saved" in result.stderr
    assert _contents(folder) == before


def test_ctrl_c_in_the_first_epoch_of_a_new_run_leaves_no_folder(tmp_path, monkeypatch):
    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(GatheredBatches, "batch", interrupt)
    monkeypatch.setattr(GatheredBatches, "in_memory", interrupt)
    with pytest.raises(KeyboardInterrupt, match="nothing was saved"):
        runs.train(RunConfig(data="iris", epochs=3), out=tmp_path / "a" / "b", progress=False)
    assert list(tmp_path.iterdir()) == []  # the folder and the parent it made are gone


def test_diverged_run_leaves_no_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["--solver", "sgd", "--lr", "1e4", "--epochs", "20", "--quiet", "--name", "bad"]
    result = invoke("train", "--data", "iris", *args, ok=False)
    assert result.exit_code == 1 and "training diverged" in result.stderr
    assert not (tmp_path / "runs").exists()
    # A folder this command did not make stays, with what else is in it.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    result = invoke("train", "--data", "iris", *args[:-2], "--out", "mine", "--overwrite", ok=False)
    assert result.exit_code == 1
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_failure_while_drawing_the_report_leaves_the_run_whole(good, monkeypatch):
    import handgrad.plots

    folder, before = good

    def broken(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(handgrad.plots, "report_figure", broken)
    result = invoke("train", *SMALL, "--seed", "3", "--out", folder, "--overwrite", ok=False)
    assert result.exit_code == 1 and "no space left" in result.stderr
    assert _contents(folder) == before


# ------------------------------------------------------------- 13.2 a class of one sample
def test_a_class_with_one_sample_stays_in_the_training_part(good, tmp_path):
    """It used to fail after replacing the good run (the report's confusion matrix had
    3 classes, its names 4); now the split keeps it for training and says so."""
    folder, before = good
    rare = _iris_csv(tmp_path / "rare.csv", ["5.0,3.0,1.5,0.2,rare"])
    result = invoke("train", "--data", rare, "--quiet", "--out", tmp_path / "r")
    warned = [line for line in result.stderr.splitlines() if "single sample" in line]
    assert warned and warned[0] == (
        "handgrad: warning: 1 of 4 classes have a single sample, kept in the training "
        "part and never held out: 'rare'"
    )
    bundle = load_bundle(tmp_path / "r" / "model.safetensors")
    assert "rare" in bundle.estimator.classes_.tolist()
    metrics = read_json(tmp_path / "r" / "metrics.json")
    assert np.asarray(metrics["confusion_matrix"]).shape == (4, 4)
    assert sum(metrics["sizes"].values()) == 151
    assert _contents(folder) == before


def test_every_class_is_in_the_training_part():
    y = np.repeat(np.arange(40), 2)  # 40 classes of 2: a 10 % held-out part cannot hold them
    X = np.arange(len(y))[:, None]
    for seed in range(5):
        _, _, y_train, y_held = stratified_split(X, y, test_size=8, seed=seed, stratify=y)
        assert set(y_train) == set(y) and len(y_held) == 8


def test_too_small_classes_are_named_briefly():
    y = np.arange(2000)
    with pytest.raises(ValueError) as info:
        stratified_split(y[:, None], y, test_size=0.25, seed=0, stratify=y)
    text = str(info.value)
    assert text.startswith("cannot hold out 500 of 2000 samples: 2000 of 2000 classes have")
    assert "(0, 1, 2, 3, 4 and 1995 more)" in text and len(text) < 300


# -------------------------------------------------------------- 12.4 defaults for the data
TARGETS = {"digits": 0.9778, "iris": 0.9737, "wine": 1.0, "breast_cancer": 0.951}


@pytest.mark.parametrize("name", TARGETS)
def test_defaults_reach_scikit_learn_within_a_point(name, tmp_path):
    """Only --data NAME: at least scikit-learn's make_pipeline(StandardScaler(),
    MLPClassifier(random_state=0)) on the same split, minus one point."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no chance or rising-loss warning either
        result = runs.train(RunConfig(data=name), out=tmp_path / name, progress=False)
    config = result.metrics["config"]
    assert config["preprocessing"] == ("scale" if name == "digits" else "standardize")
    assert config["epochs"] >= 20
    assert result.metrics["final"]["test_accuracy"] >= TARGETS[name] - 0.01


def test_default_epochs_give_a_step_budget():
    assert runs.default_epochs(101, 64) == runs.STEP_BUDGET // 2
    assert runs.default_epochs(60000, 64) == runs.MIN_EPOCHS


def test_search_takes_preprocessing(tmp_path):
    args = ["search", "--data", "iris", "--iter", "1", "--cv", "2", "--epochs", "3"]
    invoke(*args, "--hidden-choices", "4", "--out", tmp_path / "s", "--preprocessing", "scale")
    assert read_json(tmp_path / "s" / "metrics.json")["config"]["preprocessing"] == "scale"
    invoke(*args, "--hidden-choices", "4", "--out", tmp_path / "t")
    assert read_json(tmp_path / "t" / "metrics.json")["config"]["preprocessing"] == "standardize"


# ------------------------------------------------------ 12.5 the configuration that trained
def test_search_config_records_the_best_setting(tmp_path):
    from handgrad.search import random_search

    config = RunConfig(data="iris", epochs=3)
    result = random_search(config, [(3,), (5,)], n_iter=3, cv=2, out=tmp_path / "s")
    best = result.metrics["search"]["best_params"]
    recorded = result.metrics["config"]
    assert recorded["hidden"] == best["hidden_layer_sizes"] != [128]
    assert recorded["learning_rate"] == best["learning_rate_init"]
    assert recorded["alpha"] == best["alpha"]
    assert read_json(tmp_path / "s" / "config.json") == recorded
    clf = result.classifier
    assert list(clf.hidden_layer_sizes) == recorded["hidden"]
    assert clf.learning_rate_init == recorded["learning_rate"] and clf.alpha == recorded["alpha"]


# ----------------------------------------------------------- 12.6 evaluate on its own data
def test_evaluate_uses_the_recorded_data_and_folder(tmp_path, monkeypatch):
    import handgrad.runs.data

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    _iris_csv(tmp_path / "a" / "t.csv")
    os.mkdir("store")
    invoke("train", "--data", "t.csv", "--data-dir", "store", *SMALL[2:], "--out", "run")
    info = load_bundle(tmp_path / "a" / "run" / "model.safetensors").info
    assert info["data"] == str(tmp_path / "a" / "t.csv")
    assert info["data_dir"] == str(tmp_path / "a" / "store")
    seen = {}
    real = handgrad.runs.data.load_dataset  # evaluate reads the data as a run does

    def spy(name, **kwargs):
        seen.update(kwargs, name=name)
        return real(name, **kwargs)

    monkeypatch.setattr(handgrad.runs.data, "load_dataset", spy)
    monkeypatch.chdir(tmp_path / "b")  # elsewhere: the relative paths must not matter
    text = invoke("evaluate", tmp_path / "a" / "run" / "model.safetensors").output
    assert seen["name"] == str(tmp_path / "a" / "t.csv")
    assert seen["data_dir"] == str(tmp_path / "a" / "store")
    assert "accuracy" in text


# ------------------------------------------------------------- 12.9 bad outcomes are said
def test_a_run_at_chance_warns(tmp_path):
    result = invoke(
        "train",
        "--epochs",
        "2",
        "--lr",
        "10000",
        "--hidden",
        "16",
        "--quiet",
        "--out",
        tmp_path / "r",
    )
    warned = [line for line in result.stderr.splitlines() if "warning" in line]
    chance = [line for line in warned if "the model is at chance" in line]
    assert len(chance) == 1 and "with 10 classes (chance 0.1000)" in chance[0]
    assert len(set(warned)) == len(warned)  # each said once


def test_outcome_warnings_name_chance_and_a_rising_loss():
    metrics = {
        "final": {"test_accuracy": 0.95},
        "classes": [0, 1],
        "confusion_matrix": [[10, 1], [0, 9]],
        "history": {"loss": [0.7, 0.2, 0.9]},
    }
    (note,) = runs.outcome_warnings(metrics)
    assert note.startswith("the training loss rose from 0.7 (first epoch) to 0.9")
    metrics["history"]["loss"] = [0.7, 0.6]
    assert runs.outcome_warnings(metrics) == []
    metrics["final"]["test_accuracy"] = 0.52
    assert "at chance: test accuracy 0.5200 with 2 classes" in runs.outcome_warnings(metrics)[0]
    metrics["final"]["test_accuracy"] = 0.6
    metrics["confusion_matrix"] = [[12, 0], [8, 0]]
    assert "predicts one class for every test sample" in runs.outcome_warnings(metrics)[0]


# ---------------------------------------------------------- 13.5 resume on the same data
def test_resume_refuses_changed_data_and_works_from_elsewhere(tmp_path, monkeypatch):
    (tmp_path / "w").mkdir()
    monkeypatch.chdir(tmp_path / "w")
    _iris_csv(tmp_path / "w" / "t.csv")
    invoke("train", "--data", "t.csv", *SMALL[2:], "--checkpoint-every", "1", "--out", "run")
    (tmp_path / "w" / "run" / "model.safetensors").unlink()
    monkeypatch.chdir(tmp_path)  # a relative --data resumes from any folder
    assert "from epoch 3 of 3" in invoke("train", "--resume", "w/run").stderr
    _iris_csv(tmp_path / "w" / "t.csv", ["5.0,3.0,1.5,0.2,setosa"])
    line = _error_line(invoke("train", "--resume", "w/run", ok=False))
    assert f"the data changed since w/run was checkpointed: {tmp_path / 'w' / 't.csv'}" in line
    assert "--force" in line
    result = invoke("train", "--resume", "w/run", "--force")
    assert "changed since the checkpoint" in result.stderr


# ------------------------------------------------------------------- 13.7 one writer
def test_a_second_process_on_a_run_folder_is_refused(good):
    folder, before = good
    with runs.open_run_dir(folder, existing=True):
        assert (folder / runs.LOCK).read_text().strip() == str(os.getpid())
        for args in (["--resume", folder], [*SMALL, "--out", folder, "--overwrite"]):
            line = _error_line(invoke("train", *args, ok=False))
            assert f"run folder {folder} is in use by another handgrad process" in line
            assert f"(pid {os.getpid()})" in line
    assert _contents(folder) == before  # the lock is gone with its holder


def test_a_dead_process_lock_is_free(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    code = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'12345'); os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", code, str(folder / runs.LOCK)], timeout=60)
    assert (folder / runs.LOCK).exists()
    with runs.open_run_dir(folder, overwrite=True):
        pass


def test_resume_removes_only_dead_writers_temporaries(good):
    from handgrad._atomic import remove_stale_temporaries

    folder, _ = good
    (folder / "model.safetensors").unlink()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        ).stdout.strip()
        live_tmp = folder / f".metrics.json.{sleeper.pid}.abcd1234.tmp"
        dead_tmp = folder / f".metrics.json.{dead}.abcd1234.tmp"
        live_tmp.write_text("being written")
        dead_tmp.write_text("left by a crash")
        invoke("train", "--resume", folder)
        assert live_tmp.exists() and not dead_tmp.exists()
        assert remove_stale_temporaries(folder) == []
    finally:
        sleeper.kill()
        sleeper.wait()


# ----------------------------------------------------------------- 13.6 the user's umask
def test_new_files_respect_the_umask_and_replaced_files_keep_their_mode(tmp_path):
    old = os.umask(0o077)
    try:
        write_atomically(tmp_path / "new", b"x")
        assert (tmp_path / "new").stat().st_mode & 0o777 == 0o600
        os.umask(0o022)
        write_atomically(tmp_path / "other", b"x")
        assert (tmp_path / "other").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "new", 0o640)
        write_atomically(tmp_path / "new", b"y")
        assert (tmp_path / "new").stat().st_mode & 0o777 == 0o640
        assert (tmp_path / "new").read_bytes() == b"y"
    finally:
        os.umask(old)


# ------------------------------------------------------------ 13.8 the step that diverged
def test_divergence_names_the_step_where_the_loss_became_non_finite():
    from handgrad.network import MLP
    from handgrad.optim import SGD
    from handgrad.training import TrainingConfig, fit

    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)

    def attempt(**limits):
        model = MLP(4, (8,), 3, seed=0)
        config = TrainingConfig(batch_size=10, **limits)
        return fit(model, X, y, optimizer=SGD(100.0, momentum=0.9), config=config, seed=0)

    with pytest.raises(TrainingDivergedError) as info:
        attempt(max_epochs=50)
    epoch, step = map(int, re.search(r"epoch (\d+) \(step (\d+)\)", str(info.value)).groups())
    assert step != (epoch - 1) * 15 + 1  # mid-epoch (15 steps an epoch), not its first step
    attempt(max_epochs=None, max_steps=step - 1)  # finite up to the step before
    with pytest.raises(TrainingDivergedError):
        attempt(max_epochs=None, max_steps=step)


# ------------------------------------------------------------------------ 13.11 slips
def test_a_bad_npz_leaves_no_folder(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip file at all")
    result = invoke("train", "--data", tmp_path / "bad.npz", "--out", tmp_path / "o", ok=False)
    assert result.exit_code == 1 and "bad.npz" in _error_line(result)
    assert not (tmp_path / "o").exists()


def test_one_class_is_refused(tmp_path):
    one = tmp_path / "one.csv"
    one.write_text("a,b,y\n" + "".join(f"{i},{i * 2},same\n" for i in range(40)))
    line = _error_line(invoke("train", "--data", one, "--out", tmp_path / "o", ok=False))
    assert "has a single class ('same'): there is nothing to classify" in line
    assert not (tmp_path / "o").exists()


def test_a_seed_out_of_range_is_named():
    with pytest.raises(ValueError, match=r"seed must be <= 4294967295, but got 4294967296"):
        RunConfig(seed=2**32)


# --------------------------------------------------------------------------- friction
def test_resume_extends_a_finished_run_with_more_epochs(good):
    folder, _ = good
    result = invoke("train", "--resume", folder, "--epochs", "5", "--quiet")
    assert "2 epochs (to 5) in" in result.output  # the epochs this invocation ran
    metrics = read_json(folder / "metrics.json")
    assert metrics["final"]["epochs"] == 5 and metrics["config"]["epochs"] == 5
    line = _error_line(invoke("train", "--resume", folder, "--epochs", "4", ok=False))
    assert "can only extend it (give 5 or more)" in line


def test_header_and_missing_label_options(tmp_path):
    numeric = _iris_csv(tmp_path / "n.csv", header="0,1,2,3,4")
    args = ["--epochs", "2", "--hidden", "4", "--quiet"]
    invoke("train", "--data", numeric, *args, "--header", "--out", tmp_path / "h")
    sizes = read_json(tmp_path / "h" / "metrics.json")["sizes"]
    assert sum(sizes.values()) == 150
    result = invoke("train", "--data", numeric, *args, "--no-header", "--out", tmp_path / "x")
    assert "single sample" in result.stderr and "'4'" in result.stderr  # the header row
    assert sum(read_json(tmp_path / "x" / "metrics.json")["sizes"].values()) == 151
    gap = _iris_csv(tmp_path / "g.csv", ["5.0,3.0,1.5,0.2,"])
    assert invoke("train", "--data", gap, *args, "--out", tmp_path / "e", ok=False).exit_code == 1
    invoke("train", "--data", gap, *args, "--missing-label", "drop", "--out", tmp_path / "d")
    assert sum(read_json(tmp_path / "d" / "metrics.json")["sizes"].values()) == 150
