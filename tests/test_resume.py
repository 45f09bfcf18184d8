"""Crash and resume: SIGKILL a real `handgrad train` process, resume it, and get the
bit-identical weights of an uninterrupted run (issue 6, item 3)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from handgrad.io import load_arrays, load_checkpoint
from handgrad.runs import CHECKPOINT, METRICS, MODEL, TrainConfig, read_json, train

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
    proc = subprocess.Popen([*CLI, "train", "--quiet", *ARGS, "--out", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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

    resumed = subprocess.run([*CLI, "train", "--resume", str(run_dir), "--quiet"],
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "test accuracy" in resumed.stdout

    reference = train(TrainConfig(**SETTINGS), out=tmp_path / "reference", progress=False)
    want, _ = load_arrays(reference.run_dir / MODEL)
    got, _ = load_arrays(run_dir / MODEL)
    assert sorted(got) == sorted(want) == ["W1", "W2", "b1", "b2"]
    for name in want:
        assert np.array_equal(got[name], want[name]), name
    history = read_json(run_dir / METRICS)["history"]
    assert history["epochs"] == SETTINGS["epochs"]
    assert history["loss"] == reference.metrics["history"]["loss"]
    assert history["val_score"] == reference.metrics["history"]["val_score"]
    assert not list(run_dir.glob(".*.tmp"))
