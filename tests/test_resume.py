"""Crash and resume: SIGKILL a real `handgrad train` process, resume it, and get the
bit-identical weights of an uninterrupted run (issue 6, item 3)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from handgrad.modelfile import load_arrays, load_checkpoint
from handgrad.runs import CHECKPOINT, METRICS, MODEL, RunConfig, read_json, train

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

CLI = [sys.executable, "-c", "from handgrad.cli import main; main()"]
SETTINGS = {"epochs": 120, "hidden": (16,), "batch_size": 32, "checkpoint_every": 5}
ARGS = ["--epochs", "120", "--hidden", "16", "--batch-size", "32", "--checkpoint-every", "5"]


def _checkpoint_epoch(path):
    try:
        return load_checkpoint(path)[1]["epoch"]
    except (OSError, ValueError):
        return 0


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    run_dir = tmp_path / "crashed"
    proc = subprocess.Popen(
        [*CLI, "train", "--quiet", *ARGS, "--out", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    # Kill once a checkpoint after the first exists: an epoch past it is then running.
    while _checkpoint_epoch(run_dir / CHECKPOINT) < 10:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    saved_epoch = _checkpoint_epoch(run_dir / CHECKPOINT)
    assert not (run_dir / MODEL).exists(), "the run finished before it was killed"
    assert 10 <= saved_epoch < SETTINGS["epochs"] and saved_epoch % 5 == 0

    resumed = subprocess.run(
        [*CLI, "train", "--resume", str(run_dir), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "test accuracy" in resumed.stdout

    reference = train(RunConfig(**SETTINGS), out=tmp_path / "reference", progress=False)
    want, _ = load_arrays(reference.run_dir / MODEL)
    got, _ = load_arrays(run_dir / MODEL)
    # the weights, and the optimizer's state that the model file carries too
    assert sorted(got) == sorted(want) and {"W1", "W2", "b1", "b2"} < set(want)
    for name in want:
        assert np.array_equal(got[name], want[name]), name
    history = read_json(run_dir / METRICS)["history"]
    assert history["epochs"] == SETTINGS["epochs"]
    assert history["loss"] == reference.metrics["history"]["loss"]
    assert history["val_score"] == reference.metrics["history"]["val_score"]
    assert not list(run_dir.glob(".*.tmp"))


def test_crash_and_resume_with_early_stopping_in_process(tmp_path, monkeypatch):
    """Early stopping's best weights travel in the checkpoint too."""
    from click.testing import CliRunner

    import handgrad.runs as runs
    from handgrad.cli import main

    args = [
        "--epochs",
        "40",
        "--hidden",
        "8",
        "--early-stopping",
        "--patience",
        "3",
        "--lr",
        "0.01",
        "--checkpoint-every",
        "1",
        "--quiet",
    ]
    reference = CliRunner().invoke(main, ["train", *args, "--out", str(tmp_path / "ref")])
    assert reference.exit_code == 0, reference.output
    ref_metrics = read_json(tmp_path / "ref" / METRICS)
    # Crash right after the best epoch: its weights must be in that checkpoint.
    best = int(np.argmax(ref_metrics["history"]["val_score"])) + 1

    class CrashAfterSave(runs.training.Checkpoint):
        def on_epoch_end(self, run):
            super().on_epoch_end(run)
            if run.history.epochs == best:
                raise RuntimeError("simulated crash")

    monkeypatch.setattr(runs.training, "Checkpoint", CrashAfterSave)
    crashed = CliRunner().invoke(main, ["train", *args, "--out", str(tmp_path / "run")])
    assert crashed.exit_code == 1 and "simulated crash" in crashed.stderr
    monkeypatch.undo()
    resumed = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "run")])
    assert resumed.exit_code == 0, resumed.output
    assert f"from epoch {best} of 40" in resumed.stderr
    want, _ = load_arrays(tmp_path / "ref" / MODEL)
    got, _ = load_arrays(tmp_path / "run" / MODEL)
    for name in want:
        assert np.array_equal(got[name], want[name]), name
    assert ref_metrics["final"]["stop_reason"] == "early_stopping"
    assert read_json(tmp_path / "run" / METRICS)["history"] == ref_metrics["history"]
