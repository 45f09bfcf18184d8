"""Searches on a Dask cluster: the same table as on this machine, also when a worker dies
mid-search; one clear error for an unreachable scheduler, a bad spec, a missing extra or
workers without handgrad; no processes left behind.

The cluster is a LocalCluster on the loopback interface with ports chosen by the OS, so
that any number of test processes (pytest -n) can each start their own.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from numpy.testing import assert_array_equal
from sklearn.datasets import load_iris
from sklearn.model_selection import RandomizedSearchCV

from handgrad import MLPClassifier
from handgrad.cli import main
from handgrad.distributed import (
    ClusterError,
    MissingExtraError,
    check_workers,
    dask_client,
    fit_progress,
    fits_on,
    parse_scheduler,
)
from handgrad.runs import RunConfig
from handgrad.search import random_search

distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")  # comes with distributed

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CONFIG = RunConfig(data="iris", epochs=3, batch_size=16, seed=0)
HIDDEN = [(8,), (16,)]
N_ITER, CV = 6, 2
# Helper processes that outlive a cluster by design, and are not the cluster's.
NOT_THE_CLUSTERS = ("resource_tracker", "loky")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks" / "search_cluster.py"


def _children() -> dict[int, str]:
    found = {}
    for p in psutil.Process().children(recursive=True):
        try:
            found[p.pid] = " ".join(p.cmdline())
        except psutil.Error:  # exited meanwhile
            pass
    return found


def _cmdline(process: psutil.Process) -> str:
    """The command line, or "" for a process that exited (or is a zombie) meanwhile."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _assert_no_new_children(before: dict[int, str], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        new = {
            pid: cmd
            for pid, cmd in _children().items()
            if pid not in before and not any(name in cmd for name in NOT_THE_CLUSTERS)
        }
        if not new or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert new == {}


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on 127.0.0.1; at teardown, every one of its
    processes (also those restarted after a kill) must be gone."""
    before = _children()
    with distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        with distributed.Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
            yield cluster
            pids = set(client.run(os.getpid).values())
    _assert_no_new_children(before)
    assert not [pid for pid in pids if psutil.pid_exists(pid)]


@pytest.fixture
def idle_cluster(cluster):
    """The cluster once it has forgotten every earlier search's data. Scattering the same
    arrays again (their keys are hashes of their bytes) while those keys are still being
    released can cancel the new futures: dask/distributed#3703's race."""
    deadline = time.monotonic() + 30
    while cluster.scheduler.tasks and time.monotonic() < deadline:
        time.sleep(0.05)
    return cluster


@pytest.fixture(scope="module")
def local_table(tmp_path_factory):
    return _table(_search(tmp_path_factory.mktemp("local")))


def _search(out, scheduler=None, progress=False):
    return random_search(
        CONFIG, HIDDEN, n_iter=N_ITER, cv=CV, out=out, scheduler=scheduler, progress=progress
    )


def _table(result) -> list[dict]:
    """The ranked rows without the timings."""
    rows = result.metrics["search"]["results"]
    assert len(rows) == N_ITER and all(r["mean_cv_accuracy"] is not None for r in rows)
    return [{k: v for k, v in r.items() if k != "fit_seconds"} for r in rows]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ the scheduler spec
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (f"local:{os.cpu_count()}", ("local", os.cpu_count())),  # the most it takes
        ("tcp://10.0.0.5:8786", ("tcp", "tcp://10.0.0.5:8786")),
        ("tcp://scheduler.lan:8786", ("tcp", "tcp://scheduler.lan:8786")),
        ("tcp://[::1]:8786", ("tcp", "tcp://[::1]:8786")),
    ],
)
def test_scheduler_specs(spec, expected):
    assert parse_scheduler(spec) == expected


@pytest.mark.parametrize(
    "spec", ["local", "local:x", "local:2.5", "tcp://host", "10.0.0.5:8786", "tcp://a b:1"]
)
def test_a_bad_scheduler_spec_names_both_forms(spec):
    with pytest.raises(ValueError, match=r"tcp://HOST:PORT .* or local:N .*got '"):
        parse_scheduler(spec)


def test_a_local_cluster_needs_a_worker():
    with pytest.raises(ValueError, match="at least one worker"):
        parse_scheduler("local:0")


def test_without_dask_the_option_names_the_extra_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    with pytest.raises(MissingExtraError, match=r"pip install 'handgrad\[dask\]'"):
        parse_scheduler("local:2")
    result = CliRunner().invoke(
        main, ["search", "--scheduler", "local:2", "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "handgrad: error: a search on a Dask cluster (--scheduler) needs dask and "
        "distributed: pip install 'handgrad[dask]'"
    ]
    assert not (tmp_path / "s").exists()  # failed before loading anything


def test_an_unreachable_scheduler_is_one_error_within_seconds():
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {address} "):
        with dask_client(address, timeout=1.0):
            pass
    assert time.monotonic() - start < 5


# ------------------------------------------------------------------------ the searches
def test_a_search_on_the_cluster_gives_the_local_table(idle_cluster, local_table, tmp_path):
    assert _table(_search(tmp_path, idle_cluster.scheduler_address)) == local_table
    assert (tmp_path / "model.safetensors").is_file()


def test_a_worker_killed_mid_search_is_replaced_and_the_table_is_whole(
    idle_cluster, local_table, tmp_path
):
    cluster = idle_cluster
    with distributed.Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        pids = client.run(os.getpid)
        killed = {}

        def kill_a_busy_worker():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                busy = [w for w, keys in client.processing().items() if keys and w in pids]
                if busy:
                    killed[busy[0]] = pids[busy[0]]
                    os.kill(pids[busy[0]], signal.SIGKILL)
                time.sleep(0.02)

        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        try:
            result = _search(tmp_path, cluster.scheduler_address)
        finally:
            killer.join()
        (address,) = killed
        removals = [
            event
            for _, event in cluster.scheduler.get_events("all")  # in this process
            if event.get("action") == "remove-worker" and event.get("worker") == address
        ]
        # The worker died holding fits, and Dask ran them again elsewhere.
        assert removals and removals[0]["processing-tasks"] and not removals[0]["expected"]
        assert _table(result) == local_table


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            distributed.KilledWorker("fit-1", SimpleNamespace(address="tcp://w:1"), 3),
            "gave up on a fit: it took down 4 workers in a row (the last tcp://w:1);",
        ),
        (
            distributed.client.FutureCancelledError("fit-1", "lost dependencies"),
            "cancelled a fit (lost dependencies): the workers holding the search's data",
        ),
    ],
)
def test_a_fit_the_cluster_gives_up_on_is_one_clear_error(cluster, error, message):
    with pytest.raises(ClusterError, match=re.escape(f"the Dask cluster {message}")):
        with fits_on(cluster.scheduler_address):
            raise error  # as joblib passes it on from the cluster


def test_local_n_starts_a_cluster_for_the_run_and_closes_it(local_table, tmp_path, capsys):
    before = _children()
    assert _table(_search(tmp_path, "local:1", progress=True)) == local_table
    _assert_no_new_children(before)
    assert f"{N_ITER * CV}/{N_ITER * CV}" in capsys.readouterr().err  # the progress bar


def test_workers_without_handgrad_are_one_clear_error(tmp_path):
    blocker = tmp_path / "block_handgrad.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'handgrad':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    with (
        distributed.LocalCluster(
            n_workers=1,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            preload=[str(blocker)],
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        with pytest.raises(ClusterError) as info:
            check_workers(client)
    assert str(info.value).startswith("1 of 1 Dask workers cannot run handgrad ")
    assert "No module named 'handgrad'" in str(info.value)
    assert str(info.value).endswith("install the same handgrad on every worker")


# ----------------------------------------------------------------- from Python directly
IRIS = load_iris(return_X_y=True)


def _iris_search(n_jobs: int) -> RandomizedSearchCV:
    params = {"hidden_layer_sizes": [(4,), (8,)], "alpha": [1e-4, 1e-2, 1e-1]}
    return RandomizedSearchCV(
        MLPClassifier(max_iter=5, batch_size=16, random_state=0),
        params,
        n_iter=4,
        cv=2,
        n_jobs=n_jobs,
        random_state=0,
    )


def test_the_readme_lines_run_a_search_on_the_cluster(idle_cluster):
    cluster = idle_cluster
    import joblib
    from dask.distributed import Client, get_task_stream

    X, y = IRIS
    local = _iris_search(n_jobs=1).fit(X, y)
    search = _iris_search(n_jobs=-1)
    with Client(cluster.scheduler_address) as client, get_task_stream(client) as stream:
        with joblib.parallel_backend("dask", scatter=[X, y]):  # the README's lines
            search.fit(X, y)
    assert any("_fit_and_score" in str(task["key"]) for task in stream.data)
    for key in ("params", "split0_test_score", "split1_test_score", "rank_test_score"):
        assert_array_equal(search.cv_results_[key], local.cv_results_[key])


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_the_progress_bar_counts_every_fit_on_this_machine(n_jobs):
    out = StringIO()
    with warnings.catch_warnings(), fit_progress(8, file=out) as bar:
        warnings.simplefilter("ignore")
        _iris_search(n_jobs=n_jobs).fit(*IRIS)
        assert bar.n == 8
    assert "8/8" in out.getvalue()


def test_ctrl_c_closes_the_local_cluster_and_leaves_no_process(tmp_path):
    """SIGINT to the whole process group, as a terminal sends it: wherever it lands
    (start-up, a fit, the refit), the search stops; 500 settings outlast the wait."""
    command = "from handgrad.cli import main; main()"
    args = ["search", "--data", "digits", "--iter", "500", "--epochs", "50", "--out", tmp_path]
    search = subprocess.Popen(
        [sys.executable, "-c", command, *map(str, args), "--scheduler", "local:1"],
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        process, deadline = psutil.Process(search.pid), time.monotonic() + 120
        while time.monotonic() < deadline:
            workers = [p for p in process.children() if "spawn_main" in _cmdline(p)]
            if workers:
                break
            time.sleep(0.1)
        time.sleep(2)
        family = process.children(recursive=True)
        os.killpg(search.pid, signal.SIGINT)
        _, err = search.communicate(timeout=60)
    finally:
        search.kill()
    assert search.returncode == 130
    assert err.strip().splitlines()[-1] == "handgrad: interrupted"
    time.sleep(0.5)
    assert [p.pid for p in family if _alive(p)] == []


def test_the_benchmark_runs_on_the_cluster(idle_cluster, tmp_path):
    cluster = idle_cluster
    spec = importlib.util.spec_from_file_location("_bench_search_cluster", BENCHMARKS)
    bench = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCHMARKS.parent))  # it imports epoch.py beside it
    try:
        spec.loader.exec_module(bench)
        results = bench.main(
            ["--quick", "--scheduler", cluster.scheduler_address, "--out", str(tmp_path / "b.json")]
        )
    finally:
        sys.path.remove(str(BENCHMARKS.parent))
    assert results["fits"] == 4 and results["same_table"] is True
    assert len(results["local_s"]) == len(results["cluster_s"]) == 1 and results["ratio"] > 0
