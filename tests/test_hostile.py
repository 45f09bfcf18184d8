"""Hostile input on the surfaces of issue 24: export, the readers, the cluster search,
assigned weights and the regressor's messages. Each case is one clear line (or a right
answer), never a hang, a huge allocation, a lost file or a run written after Ctrl-C."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from handgrad.cli import main
from handgrad.errors import ModelFileError
from handgrad.estimator import MLPClassifier, MLPRegressor

CLI = [sys.executable, "-c", "from handgrad.cli import main; main()"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, match):
    """The CLI failed with one ``handgrad: error:`` line holding ``match``."""
    assert result.exit_code not in (0, None), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("handgrad: error: ") and match in lines[0], lines[0]
    return lines[0]


def run_cli(*args, timeout=60, **kwargs):
    """The CLI in a child process (a hang fails the test instead of the suite)."""
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "base"
    result = invoke("train", "--epochs", "2", "--hidden", "8", "--quiet", "--out", folder)
    assert result.exit_code == 0, result.output
    return folder / "model.safetensors"


@pytest.fixture
def fitted(blobs):
    X, y = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(X, y), X, y


# ---------------------------------------------------------------------- 1. export
def test_export_onto_its_own_input_is_refused_and_the_model_kept(run):
    before = run.read_bytes()
    one_line_error(invoke("export", run, run), "is the model file itself")
    assert run.read_bytes() == before


def test_export_onto_an_existing_file_needs_overwrite(run, tmp_path):
    target = tmp_path / "old.onnx"
    target.write_bytes(b"precious")
    one_line_error(invoke("export", run, target), "--overwrite")
    assert target.read_bytes() == b"precious"
    result = invoke("export", run, target, "--overwrite")
    assert result.exit_code == 0, result.output
    assert target.read_bytes() != b"precious"


def test_export_needs_the_onnx_suffix(run, tmp_path):
    target = tmp_path / "model.safetensors"
    one_line_error(invoke("export", run, target), "must end in .onnx")
    assert not target.exists()


# ---------------------------------------------------------------------- 2. bounded reads
def test_labels_that_link_to_a_device_are_one_line(tmp_path):
    np.save(tmp_path / "X.npy", np.zeros((4, 2), np.float32))
    os.symlink("/dev/zero", tmp_path / "y.csv")
    result = run_cli(
        "train", "--data", tmp_path / "X.npy", "--labels", tmp_path / "y.csv", timeout=30
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"handgrad: error: {tmp_path / 'y.csv'} is a character device, not a regular file: "
        "give the path of a labels file"
    ]


def test_a_model_file_is_refused_after_reading_its_header_only(tmp_path):
    from handgrad.modelfile import load_arrays

    path = tmp_path / "big.safetensors"
    with open(path, "wb") as handle:  # sparse: 256 MiB of zeros, a header length of 0
        handle.truncate(256 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="header is not JSON"):
            load_arrays(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_model_file_header_longer_than_the_file_is_refused_unread(tmp_path):
    from handgrad.modelfile import load_arrays

    path = tmp_path / "lie.safetensors"
    path.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(ModelFileError, match="header of 1000000000 bytes in a 10-byte file"):
        load_arrays(path)


def test_labels_declaring_more_rows_than_memory_are_refused_before_allocating(tmp_path):
    from handgrad.data.mapped import read_labels

    path = tmp_path / "y.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)}
        )
        handle.write(b"\0" * 64)
    with pytest.raises(ValueError, match=r"y.npy needs 7.28 TiB, more than this machine's"):
        read_labels(path)


def test_labels_npy_shorter_than_its_header_is_one_line(tmp_path):
    from handgrad.data.mapped import read_labels

    path = tmp_path / "y.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<i8", "fortran_order": False, "shape": (1000,)}
        )
        handle.write(b"\0" * 64)
    with pytest.raises(ValueError, match=r"y.npy is truncated: its header declares 8000 bytes"):
        read_labels(path)


class _Junk:
    """A TCP server on the loopback that answers every connection with ``payload``."""

    def __init__(self, payload: bytes) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.payload = payload
        self.address = f"tcp://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.payload)
                time.sleep(0.5)


@pytest.mark.parametrize("payload", [b"\xff" * 64, b"HTTP/1.1 400 Bad Request\r\n\r\n" * 3])
def test_an_address_that_is_not_a_dask_scheduler_is_one_line(payload):
    pytest.importorskip("distributed")
    server = _Junk(payload)
    script = (
        "from handgrad.distributed import dask_client, ClusterError\n"
        "try:\n"
        f"    with dask_client({server.address!r}):\n"
        "        pass\n"
        "except ClusterError as exc:\n"
        "    print(exc)\n"
    )
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - start < 20
    assert result.stderr == ""  # nothing from a destructor
    assert result.stdout.strip().splitlines() == [
        f"{server.address} is not a Dask scheduler (its first answer is not Dask's handshake)"
    ]
    server.server.close()


# --------------------------------------------------------------------------- 3. search
def test_a_local_cluster_is_bounded_by_the_cpus():
    pytest.importorskip("distributed")
    from handgrad.distributed import parse_scheduler

    cpus = os.cpu_count()
    assert parse_scheduler(f"local:{cpus}") == ("local", cpus)
    with pytest.raises(ValueError, match=rf"at most {cpus} workers on this machine's {cpus} CPUs"):
        parse_scheduler(f"local:{cpus + 1}")


def test_ctrl_c_stops_a_search_with_one_job_at_once(tmp_path):
    out = tmp_path / "search"
    search = subprocess.Popen(
        [*CLI, "search", "--iter", "500", "--epochs", "200", "--jobs", "1", "--out", str(out)],
        start_new_session=True,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / ".lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # into the first fits
        os.killpg(search.pid, signal.SIGINT)
        stopped = time.monotonic()
        _, err = search.communicate(timeout=30)
        took = time.monotonic() - stopped
    finally:
        search.kill()
    assert search.returncode == 130, err
    assert err.strip().splitlines()[-1] == "handgrad: interrupted"
    assert "Training interrupted by user" not in err
    assert took < 2
    assert not out.exists()  # no run, no lock


# ------------------------------------------------------------------ 4. non-finite weights
@pytest.mark.parametrize("method", ["predict", "predict_proba", "score"])
def test_assigned_nan_weights_are_refused_by_the_estimator(fitted, method):
    clf, X, y = fitted
    clf.coefs_[0][0, 0] = np.nan
    args = (X, y) if method == "score" else (X,)
    with pytest.raises(ValueError, match=r"coefs_\[0\] holds non-finite values \(1 of 20, NaN"):
        getattr(clf, method)(*args)


def test_nan_weights_of_a_regressor_are_refused(blobs):
    X, y = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = MLPRegressor(hidden_layer_sizes=(3,), max_iter=3, random_state=0).fit(X, y * 1.5)
    reg.intercepts_[1][0] = np.inf
    with pytest.raises(ValueError, match=r"intercepts_\[1\] holds non-finite values"):
        reg.predict(X)


def test_save_model_and_to_onnx_refuse_nan_weights(fitted, tmp_path):
    from handgrad.export import to_onnx
    from handgrad.state import save_model

    clf, _, _ = fitted
    clf.coefs_[1][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"coefs_\[1\] holds non-finite values"):
        save_model(tmp_path / "m.safetensors", clf)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"coefs_\[1\] holds non-finite values"):
        to_onnx(clf)


# -------------------------------------------------------------------------- 5. FIFOs
def test_a_fifo_as_x_npy_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "X.npy")
    np.save(tmp_path / "y.npy", np.zeros(4, np.int64))
    result = run_cli(
        "train", "--data", tmp_path / "X.npy", "--labels", tmp_path / "y.npy", timeout=30
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"handgrad: error: {tmp_path / 'X.npy'} is a FIFO, not a regular file: "
        "give the path of a .npy file"
    ]


@pytest.mark.parametrize("command", ["export", "predict"])
def test_a_fifo_as_the_model_file_is_one_line(tmp_path, command):
    os.mkfifo(tmp_path / "model.safetensors")
    args = ["x.onnx"] if command == "export" else [tmp_path / "rows.csv"]
    result = run_cli(command, tmp_path / "model.safetensors", *args, timeout=30, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"handgrad: error: {tmp_path / 'model.safetensors'} is a FIFO, not a regular file: "
        "give the path of a model file"
    ]


def test_load_model_of_a_fifo_is_refused_without_blocking(tmp_path):
    from handgrad.state import load_model

    os.mkfifo(tmp_path / "m.safetensors")
    box = []
    thread = threading.Thread(target=lambda: box.append(_raised(load_model, tmp_path)))
    thread.daemon = True
    thread.start()
    thread.join(10)
    assert box and isinstance(box[0], ValueError) and "is a FIFO" in str(box[0])


def _raised(load, folder):
    try:
        load(folder / "m.safetensors")
    except Exception as exc:
        return exc
    return None


# --------------------------------------------------------------------- 6. uint64 labels
def test_uint64_labels_above_2_to_the_63_come_out_of_onnx_as_predict_gives_them(blobs):
    ort = pytest.importorskip("onnxruntime")
    from handgrad.export import to_onnx

    X, y = blobs
    classes = np.array([2**63, 2**63 + 7, 2**64 - 1], dtype=np.uint64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=20, random_state=0)
        clf.fit(X, classes[y])
    session = ort.InferenceSession(to_onnx(clf).SerializeToString())
    label, _ = session.run(None, {"X": X.astype(np.float32)})
    assert label.dtype == np.uint64
    np.testing.assert_array_equal(label, clf.predict(X))


# ---------------------------------------------------------------- 7. messages that help
@pytest.fixture
def npy_run(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return tmp_path


def test_resume_names_the_labels_file_that_changed(npy_run):
    folder = npy_run / "run"
    args = ["--data", npy_run / "X.npy", "--labels", npy_run / "y.npy"]
    result = invoke(
        "train", *args, "--epochs", "4", "--checkpoint-every", "1", "--quiet", "--out", folder
    )
    assert result.exit_code == 0, result.output
    y = np.load(npy_run / "y.npy")
    np.save(npy_run / "y.npy", 1 - y)
    line = one_line_error(invoke("train", "--epochs", "8", "--resume", folder), "the data changed")
    assert f"{npy_run / 'y.npy'} (same size, different content)" in line
    assert "X.npy" not in line


def _regression_files(folder, target):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(target), 3)).astype(np.float32)
    np.save(folder / "X.npy", X)
    np.save(folder / "t.npy", np.asarray(target, np.float64))
    return ["--data", folder / "X.npy", "--labels", folder / "t.npy", "--task", "regression"]


def test_an_infinite_target_is_called_infinite_not_text(tmp_path):
    target = np.linspace(0, 1, 40)
    target[3] = np.inf
    line = one_line_error(invoke("train", *_regression_files(tmp_path, target)), "t.npy")
    assert "not finite (inf in row 3)" in line and "text" not in line
    assert "--task classification" not in line


def test_a_target_too_large_to_scale_says_so(tmp_path):
    target = np.linspace(1e200, 1e300, 40)
    line = one_line_error(invoke("train", *_regression_files(tmp_path, target)), "t.npy")
    assert "too large to scale" in line and "NaN" not in line


def test_a_constant_target_is_not_sent_to_classification(tmp_path):
    line = one_line_error(invoke("train", *_regression_files(tmp_path, np.full(40, 3.0))), "t.npy")
    assert "3 in every row: there is nothing to regress" in line
    assert "--task classification" not in line


def test_a_nearly_constant_target_is_warned(tmp_path):
    target = 1 + np.tile([1e-15, -1e-15], 100)
    result = invoke(
        "train", *_regression_files(tmp_path, target), "--epochs", "2", "--out", tmp_path / "r"
    )
    assert result.exit_code == 0, result.output
    assert "handgrad: warning: the target barely varies" in result.stderr


def test_an_x_with_no_rows_says_so(tmp_path):
    np.save(tmp_path / "X.npy", np.zeros((0, 3), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(0, np.int64))
    line = one_line_error(
        invoke("train", "--data", tmp_path / "X.npy", "--labels", tmp_path / "y.npy"), "X.npy"
    )
    assert "has no rows" in line and "single class" not in line


@pytest.mark.parametrize("which", ["X", "y"])
def test_a_file_that_is_not_npy_gets_no_pickle_advice(tmp_path, which):
    np.save(tmp_path / "X.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(4, np.int64))
    (tmp_path / f"{which}.npy").write_bytes(b"a,b,c\n1,2,3\n")
    line = one_line_error(
        invoke("train", "--data", tmp_path / "X.npy", "--labels", tmp_path / "y.npy"),
        f"{which}.npy is not a .npy file",
    )
    assert "pickle" not in line


def test_the_advice_for_a_fortran_ordered_x_works(tmp_path):
    from handgrad.data.mapped import open_X

    X = np.asfortranarray(np.arange(12.0).reshape(4, 3))
    np.save(tmp_path / "X.npy", X)
    with pytest.raises(ValueError, match=r"np\.ascontiguousarray") as info:
        open_X(tmp_path / "X.npy")
    advice = str(info.value).split("save it as ")[1]
    namespace = {"np": np, "X": X, "path": tmp_path / "X.npy"}
    exec(advice, namespace)  # the advice as written
    assert open_X(tmp_path / "X.npy").flags.c_contiguous


def test_an_unwritable_folder_is_named_not_the_temporary_file(tmp_path, monkeypatch):
    import tempfile

    from handgrad._atomic import write_atomically

    def read_only(*args, dir=None, prefix="", **kwargs):
        name = os.path.join(dir, f"{prefix}x1y2.tmp")
        raise OSError(errno.EROFS, "Read-only file system", name)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    with pytest.raises(OSError) as info:
        write_atomically(tmp_path / "model.onnx", b"x")
    assert ".tmp" not in str(info.value)
    assert (info.value.errno, info.value.strerror) == (errno.EROFS, "Read-only file system")
    assert info.value.filename == str(tmp_path / "model.onnx")
