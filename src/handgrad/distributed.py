"""Where a search's cross-validation fits run: here, or on a Dask cluster.

A scheduler spec names the place:

* ``None`` — this machine, through joblib's default backend (``n_jobs`` processes);
* ``"tcp://HOST:PORT"`` — an existing ``dask.distributed`` cluster, reached through its
  scheduler;
* ``"local:N"`` — a ``LocalCluster`` of N single-threaded worker processes on the
  loopback interface, started for the run and closed after it (also on an error or
  Ctrl-C). Its workers are spawned processes, so a script that uses it needs the usual
  ``if __name__ == "__main__":`` guard.

The fits reach the cluster through joblib's Dask backend, so scikit-learn's search code
runs unchanged. Dask reruns the fits of a worker that dies; the data every fit reads
(X, y and the index arrays of the folds) is broadcast to every worker first, because a
piece of data held by one worker only dies with it and cannot be recomputed.
:func:`fit_progress` shows a bar that advances as fits complete, for every backend.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from handgrad._version import handgrad_version
from handgrad.errors import HandgradError

__all__ = [
    "ClusterError",
    "MissingExtraError",
    "check_workers",
    "dask_client",
    "fit_progress",
    "fits_on",
    "parse_scheduler",
]

#: Seconds to wait for a scheduler to answer (or a new cluster's first worker).
CONNECT_TIMEOUT = 5.0
#: Seconds for the workers of a local cluster to start (they import NumPy, scikit-learn…).
WORKER_START_TIMEOUT = 120.0
#: Workers a fit may take down before Dask gives up on it (the scheduler's own default):
#: one lost worker is bad luck, four in a row is the fit itself (e.g. out of memory).
ALLOWED_FAILURES = 3
INSTALL_HINT = "pip install 'handgrad[dask]'"
#: Bytes of a Dask handshake (a few settings) above which a first answer is not one.
_MAX_HANDSHAKE = 1 << 16
_LOCAL = re.compile(r"local:(\d+)")
_TCP = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):\d+")  # a name, IPv4 or [IPv6]


class ClusterError(HandgradError, ConnectionError):
    """A Dask cluster cannot be reached, cannot run handgrad, or keeps losing a fit."""


class MissingExtraError(HandgradError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


def parse_scheduler(spec: str) -> tuple[str, str | int]:
    """``("tcp", address)`` or ``("local", n_workers)``; ValueError for anything else,
    MissingExtraError when Dask is not installed."""
    if not isinstance(spec, str):
        raise TypeError(f"scheduler must be a string like tcp://HOST:PORT or local:N, got {spec!r}")
    local, tcp = _LOCAL.fullmatch(spec), _TCP.fullmatch(spec)
    if local and int(local.group(1)) < 1:
        raise ValueError(f"scheduler {spec!r}: a local cluster needs at least one worker")
    cpus = os.cpu_count() or 1
    if local and int(local.group(1)) > cpus:
        raise ValueError(
            f"scheduler {spec!r}: a local cluster has at most {cpus} workers on this "
            f"machine's {cpus} CPUs (each worker is one single-threaded process)"
        )
    if not (local or tcp):
        raise ValueError(
            f"scheduler must be tcp://HOST:PORT (an existing Dask scheduler) or local:N "
            f"(N worker processes on this machine), got {spec!r}"
        )
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            f"a search on a Dask cluster (--scheduler) needs dask and distributed: {INSTALL_HINT}"
        ) from None
    return ("local", int(local.group(1))) if local else ("tcp", spec)


@contextmanager
def dask_client(spec: str, *, timeout: float = CONNECT_TIMEOUT) -> Iterator[Any]:
    """A ``distributed.Client`` for ``spec``, closed (with the cluster it started) on exit.

    An unreachable scheduler is a :class:`ClusterError` after ``timeout`` seconds.
    """
    import dask
    from distributed import Client, LocalCluster

    kind, where = parse_scheduler(spec)
    if kind == "tcp":
        _check_scheduler(str(where), timeout)
        try:
            client = Client(where, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {where} within {timeout:g} s ({exc})"
            ) from None
        with client:
            yield client
        return
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        # The workers come after `with`: a Ctrl-C while they start then closes them too.
        cluster = LocalCluster(
            n_workers=0,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            scheduler_port=0,
            preload=["handgrad.distributed"],  # dask_setup below
            dashboard_address="127.0.0.1:0",  # a free port: never 8787 twice
        )
    with cluster, Client(cluster, set_as_default=False) as client:
        cluster.scale(where)
        try:
            client.wait_for_workers(where, timeout=WORKER_START_TIMEOUT)
        except TimeoutError:
            raise ClusterError(
                f"the local Dask cluster's {where} workers did not start within "
                f"{WORKER_START_TIMEOUT:g} s (see the messages above)"
            ) from None
        yield client


def _check_scheduler(address: str, timeout: float) -> None:
    """A :class:`ClusterError` unless ``address`` answers a connection with Dask's
    handshake within ``timeout`` seconds, before Dask's client connects.

    A Dask server speaks first: an 8-byte length, then a small message that holds its
    ``pickle-protocol``. The length is checked before anything else is read, so a
    server of another kind (HTTP, SSH, junk) is one line, never a buffer of the size
    its first bytes happen to spell, nor a client left to complain from its destructor.
    """
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
            head = _receive(sock, 8, deadline)
            length = int.from_bytes(head, "little") if len(head) == 8 else 0
            body = _receive(sock, length, deadline) if 0 < length <= _MAX_HANDSHAKE else b""
    except OSError as exc:  # refused, unreachable, or silent (TimeoutError)
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
            f"({exc.strerror or exc or type(exc).__name__})"
        ) from None
    if b"pickle-protocol" not in body:
        raise ClusterError(
            f"{address} is not a Dask scheduler (its first answer is not Dask's handshake)"
        )


def _receive(sock: socket.socket, n: int, deadline: float) -> bytes:
    """Up to ``n`` bytes (fewer when the peer closes), by ``deadline``."""
    data = bytearray()
    while len(data) < n:
        sock.settimeout(max(deadline - time.monotonic(), 1e-3))
        chunk = sock.recv(min(n - len(data), 1 << 16))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def dask_setup(worker: Any) -> None:
    """Run in each worker of a ``local:N`` cluster as it starts (a Dask preload).

    Ctrl-C in a terminal reaches the whole process group; the workers ignore it and
    leave it to this process to close the cluster in order.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def check_workers(client: Any, *, timeout: float = CONNECT_TIMEOUT) -> str:
    """The handgrad version every worker runs, which must be this one; a
    :class:`ClusterError` naming the workers without it (or with another version)."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise ClusterError(
            f"the Dask cluster at {client.scheduler.address} has no workers (waited {timeout:g} s)"
        ) from None
    here = handgrad_version()
    found = client.run(_worker_handgrad_version, on_error="return")
    wrong = {
        worker: (str(v) or type(v).__name__) if isinstance(v, BaseException) else f"handgrad {v}"
        for worker, v in found.items()
        if v != here
    }
    if wrong:
        worker, problem = next(iter(sorted(wrong.items())))
        raise ClusterError(
            f"{len(wrong)} of {len(found)} Dask workers cannot run handgrad {here} "
            f"(e.g. {worker}: {problem}); install the same handgrad on every worker"
        )
    return here


def _worker_handgrad_version() -> str:
    """Run on a worker: import what the fits need, and say which handgrad it is."""
    import handgrad.estimator  # noqa: F401
    from handgrad._version import handgrad_version

    return handgrad_version()


@contextmanager
def fits_on(scheduler: str | None, *, shared: Sequence[Any] = ()) -> Iterator[None]:
    """Run the joblib-parallel fits inside the block on ``scheduler`` (see the module
    docstring). ``shared``: the arrays every fit reads, sent once to every worker."""
    if scheduler is None:
        yield
        return
    import joblib
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError

    with dask_client(scheduler) as client:
        check_workers(client)
        with joblib.parallel_backend("dask", client=client, scatter=list(shared)):
            try:
                yield
            except KilledWorker as exc:
                where = getattr(exc.last_worker, "address", "?")
                raise ClusterError(
                    f"the Dask cluster gave up on a fit: it took down "
                    f"{exc.allowed_failures + 1} workers in a row (the last {where}); "
                    "see the workers' logs (out of memory?)"
                ) from None
            except FutureCancelledError as exc:
                raise ClusterError(
                    f"the Dask cluster cancelled a fit ({exc.reason}): the workers holding "
                    "the search's data left all at once"
                ) from None


@contextmanager
def fit_progress(
    total: int, *, disable: bool = False, file: IO[str] | None = None
) -> Iterator[Any]:
    """A tqdm bar of ``total`` fits that advances as joblib collects each result.

    joblib has no public completion callback, but every backend (sequential, loky,
    Dask) calls ``Parallel.print_progress`` in this process after each completed batch;
    for the block, that method also moves the bar to ``n_completed_tasks``. Any other
    joblib call running meanwhile in another thread would move it too.
    """
    from joblib import Parallel
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="fit", desc="fits", disable=disable, file=file)
    original = Parallel.print_progress

    def print_progress(parallel: Any) -> None:
        original(parallel)
        done = min(parallel.n_completed_tasks, total)
        if done > bar.n:
            bar.update(done - bar.n)

    Parallel.print_progress = print_progress
    try:
        yield bar
    finally:
        Parallel.print_progress = original
        bar.close()
