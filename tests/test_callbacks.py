"""Callbacks: progress bar, validation score, early stopping, checkpoints and resume."""

import io

import numpy as np
import pytest

from handgrad.callbacks import Checkpoint, ProgressBar
from handgrad.errors import ModelFileError
from handgrad.modelfile import load_checkpoint, save_checkpoint
from handgrad.network import MLP
from handgrad.optim import SGD, Adam, InvScaling, StepDecay
from handgrad.state import load_run, save_run
from handgrad.training import Callback, TrainingConfig, fit


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 6)) * 3
    y = rng.integers(0, 3, 240)
    X = (centres[y] + rng.standard_normal((240, 6))).astype(np.float32)
    return X[:200], y[:200], X[200:], y[200:]


def _config(epochs):
    # Early stopping that never triggers: best weights are tracked (and checkpointed).
    return TrainingConfig(
        batch_size=32, max_epochs=epochs, reg=1e-3, stopping="validation", n_iter_no_change=100
    )


def _train(blobs, make_opt, epochs, callbacks=(), run=None):
    X, y, Xv, yv = blobs
    model = MLP(6, (8,), 3, seed=0, dtype=np.float32)
    if run is not None:
        model = run.model
    fit(
        model,
        X,
        y,
        optimizer=make_opt(),
        config=_config(epochs),
        seed=1,
        validation=(Xv, yv),
        callbacks=callbacks,
        run=run,
    )
    return model


class _Crash(Callback):
    def __init__(self, at):
        self.at = at

    def on_epoch_end(self, run):
        if run.history.epochs == self.at:
            raise RuntimeError("crash")


OPTIMIZERS = {
    "adam": lambda: Adam(1e-2),
    "sgd-nesterov-invscaling": lambda: SGD(
        0.1, momentum=0.9, nesterov=True, schedule=InvScaling(0.3)
    ),
    "sgd-step": lambda: SGD(0.05, schedule=StepDecay(0.9)),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resume_from_checkpoint_is_bit_identical(tmp_path, blobs, name):
    make = OPTIMIZERS[name]
    reference = _train(blobs, make, 7)
    path = tmp_path / "ckpt.safetensors"
    with pytest.raises(RuntimeError, match="crash"):
        _train(blobs, make, 7, [Checkpoint(path, every=2), _Crash(at=5)])
    run, extra = load_run(path)
    assert run.history.epochs == 4 and extra == {}
    X, y, Xv, yv = blobs
    fit(run.model, X, y, optimizer=run.optimizer, run=run, config=_config(3), validation=(Xv, yv))
    for k, v in reference.params.items():
        assert np.array_equal(v, run.model.params[k]), k
    assert run.history.epochs == 7


def test_checkpoint_every_k_epochs_holds_everything(tmp_path, blobs):
    saved = []
    path = tmp_path / "c.safetensors"
    _train(
        blobs,
        OPTIMIZERS["adam"],
        5,
        [
            Checkpoint(
                path,
                every=2,
                metadata={"config": {"a": 1}},
                on_save=lambda p, run: saved.append(run.history.epochs),
            )
        ],
    )
    assert saved == [2, 4]
    tensors, meta = load_checkpoint(path)
    assert {"param.W1", "param.b2", "optim.m.W1", "optim.v.b1"} <= set(tensors)
    assert meta["epoch"] == 4 and meta["extra"] == {"config": {"a": 1}}
    assert meta["rng"]["bit_generator"] == "PCG64"
    assert meta["optimizer"]["name"] == "adam" and meta["optimizer_state"]["t"] > 0
    assert len(meta["history"]["val_score"]) == 4
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_checkpoint_interval_must_be_positive(tmp_path):
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match="checkpoint interval"):
            Checkpoint(tmp_path / "c", every=bad)


def test_progress_bar_shows_loss_and_validation_accuracy(blobs, monkeypatch):
    stream = io.StringIO()
    import tqdm.auto

    real = tqdm.auto.tqdm
    monkeypatch.setattr(tqdm.auto, "tqdm", lambda *a, **k: real(*a, **k, file=stream))
    bar = ProgressBar(3)
    _train(blobs, OPTIMIZERS["adam"], 3, [bar])
    text = stream.getvalue()
    assert "3/3" in text and "loss=" in text and "val_acc=" in text
    assert bar._bar is None  # closed at the end


def test_progress_bar_disabled_prints_nothing(blobs, capsys):
    _train(blobs, OPTIMIZERS["adam"], 2, [ProgressBar(2, disable=True)])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_broken_checkpoints_are_refused(tmp_path, blobs):
    path = tmp_path / "c.safetensors"
    _train(blobs, OPTIMIZERS["adam"], 2, [Checkpoint(path, every=1)])
    tensors, meta = load_checkpoint(path)
    for change, message in [
        ({"optimizer": {**meta["optimizer"], "name": "os.system"}}, "unknown optimizer"),
        ({"rng": {**meta["rng"], "bit_generator": "Evil"}}, "unknown random generator"),
        ({"model": {**meta["model"], "kind": "Popen"}}, "unknown kind 'Popen'"),
        ({"epoch": 99}, "epoch disagrees"),
        ({"history": {"nonsense": 1}}, "cannot rebuild"),
    ]:
        save_checkpoint(tmp_path / "bad.safetensors", tensors, {**meta, **change})
        with pytest.raises(ModelFileError, match=message):
            load_run(tmp_path / "bad.safetensors")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelFileError):
        load_run(path)


def test_save_run_round_trips_best_params(tmp_path, blobs):
    from handgrad.training import History, Run

    model = MLP(6, (8,), 3, seed=0)
    best = {k: v + 1 for k, v in model.params.items()}
    run = Run(model, Adam(), np.random.default_rng(5), History(), best)
    save_run(tmp_path / "r", run)
    back, _ = load_run(tmp_path / "r")
    for k in model.params:
        assert np.array_equal(back.best_params[k], best[k])
    assert back.rng.integers(1 << 30) == np.random.default_rng(5).integers(1 << 30)
