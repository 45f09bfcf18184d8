"""How many BLAS threads handgrad's own products use: chosen by the work, overridable.

A product of a few million multiply-adds finishes before a second BLAS thread has
paid for waking up, and two spinning threads on a machine where anything else runs
share one core and lose several times over. So the count follows the size of the
largest product of a step (batch rows × inputs × outputs of a layer): one thread per
``WORK_PER_THREAD`` multiply-adds, at least one, no more than the CPUs that other
processes leave free (the CPU time they took lately says how many are busy: a thread
that has to share a core makes every product wait for it), and never more than the
BLAS library's
current setting (the user's own ``threadpoolctl.threadpool_limits`` or
``OPENBLAS_NUM_THREADS`` is a ceiling that handgrad never raises).

The limit holds only inside :func:`blas_threads` — around ``training.fit`` and the
estimators' prediction — and the previous setting is restored after, so the user's
global setting is never changed. :func:`threads` overrides the choice::

    with handgrad.threads(2):   # exactly two BLAS threads for handgrad's products
        clf.fit(X, y)

Like every BLAS thread setting, the limit is process-wide while it holds: another
Python thread running NumPy products at the same time gets it too.
"""

from __future__ import annotations

import contextlib
import operator
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any, ClassVar

__all__ = ["WORK_PER_THREAD", "blas_threads", "choose_threads", "threads"]

#: Multiply-adds of the largest product per BLAS thread. Below one such share a product
#: runs on one thread (scikit-learn's digits: 200 × 64 × 100 = 1.3 M); MNIST- and
#: CIFAR-sized steps (40 M, 61 M) get several.
WORK_PER_THREAD = 8_000_000

#: OpenBLAS runs a product of at most this many multiply-adds on one thread whatever
#: its setting (``GEMM_MULTITHREAD_THRESHOLD`` × 65,536): the pool is then left alone,
#: at no cost per call (a one-row prediction must not pay for setting it).
SINGLE_THREADED_BY_BLAS = 262_144

_OVERRIDE: ContextVar[int | None] = ContextVar("handgrad_threads", default=None)
_controller: list[Any] = []  # the BLAS libraries, found on first use (a scan of ~10 ms)


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Within the block, handgrad's products use exactly ``n`` BLAS threads; ``None``
    (the default outside any block) lets the size of the work choose, as above."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"threads must be a positive int or None, got {n!r}")
    token = _OVERRIDE.set(n)
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


def choose_threads(rows: int, layer_sizes: Sequence[int], available: int | None = None) -> int:
    """Threads for products of ``rows`` rows through layers ``layer_sizes``
    ``(D, H1, …, C)``: one per ``WORK_PER_THREAD`` multiply-adds of the largest
    product, between 1 and ``available`` (the CPUs left free by other processes, by
    default)."""
    cap = _free_cpus() if available is None else available
    return max(1, min(cap, _largest_product(rows, layer_sizes) // WORK_PER_THREAD))


def blas_threads(
    rows: int, layer_sizes: Sequence[int], *, small_on_one_thread: bool = True
) -> contextlib.AbstractContextManager:
    """A context that limits the BLAS threads for handgrad's products of ``rows`` rows
    through ``layer_sizes`` while it holds, and restores the previous setting after.

    The pool is touched only when that changes something: an explicit :func:`threads`
    count is set as given; otherwise the chosen count only ever lowers the current one,
    and work that BLAS runs on one thread anyway leaves it alone (a null context, the
    cost of a one-row prediction). ``small_on_one_thread=False`` is for a library that
    does not keep small products on one thread by itself (PyTorch on the CPU spreads
    even a 200×64×100 product over all its OpenMP threads): the chosen count is then
    set for small work too.
    """
    n = _OVERRIDE.get()
    if n is None:
        work = _largest_product(rows, layer_sizes)
        if work <= SINGLE_THREADED_BY_BLAS and small_on_one_thread:
            return contextlib.nullcontext()
        n = choose_threads(rows, layer_sizes)
        if small_on_one_thread and (n >= _usable_cpus() or n >= _current()):
            return contextlib.nullcontext()
    return _Limit(n) if small_on_one_thread else _with_openmp(n)


@contextlib.contextmanager
def _with_openmp(n: int) -> Iterator[None]:
    """BLAS and the OpenMP pools (PyTorch's CPU operations run on one) at ``n`` threads
    while the block runs, neither raised above its current setting; for another
    library's arrays, whose pools are looked up now that the library is loaded."""
    from threadpoolctl import ThreadpoolController

    openmp = ThreadpoolController().select(user_api="openmp")
    current = [lib.get_num_threads() for lib in openmp.lib_controllers]
    with _Limit(min(n, _current())), openmp.limit(limits=min([n, *current])):
        yield


class _Limit:
    """Set the BLAS libraries to ``n`` threads; on leaving, put back the setting found
    on entry — and, when the last of several overlapping limits (Python threads
    predicting at once) leaves, the setting found before the first, so that however
    they interleave the user's setting comes back."""

    # The BLAS setting is one per process, so is the count of limits holding it.
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _active: ClassVar[int] = 0
    _original: ClassVar[list[int]] = []

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        libs = _blas().lib_controllers
        with self._lock:
            self.entry = [lib.get_num_threads() for lib in libs]
            if _Limit._active == 0:
                _Limit._original = self.entry
            _Limit._active += 1
            for lib in libs:
                lib.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        libs = _blas().lib_controllers
        with self._lock:
            _Limit._active -= 1
            back = _Limit._original if _Limit._active == 0 else self.entry
            for lib, n in zip(libs, back, strict=True):
                lib.set_num_threads(n)


def _largest_product(rows: int, layer_sizes: Sequence[int]) -> int:
    """Multiply-adds of the largest of the layers' products ``A W`` on ``rows`` rows."""
    return rows * max(map(operator.mul, layer_sizes[:-1], layer_sizes[1:]))


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _free_cpus() -> int:
    """The usable CPUs less those busy with other processes, shared out over the
    machine's CPUs. Busy elsewhere: on Linux, the CPU time that other processes took
    lately (:func:`_busy_elsewhere`); otherwise, or before there is a window to measure
    it over, the 1-minute load average less the asking thread."""
    usable = _usable_cpus()
    others = _busy_elsewhere()
    if others is None:
        try:
            others = max(0.0, os.getloadavg()[0] - 1.0)
        except (AttributeError, OSError):  # not on this platform
            return usable
    others *= usable / (os.cpu_count() or usable)
    return max(1, usable - round(others))


#: The window's start: (monotonic s, machine's busy CPU s, this process's CPU s)
_window: list[float] = []
_elsewhere: list[float | None] = [None]  # the last measured value


def _busy_elsewhere() -> float | None:
    """CPUs that other processes kept busy over the last half minute or so (the
    machine's busy CPU time, from /proc/stat, less this process's own, BLAS threads
    included, per second); None where that cannot be read or no window is measured
    yet. Unlike the load average, this leaves out the process's own threads: a fit on
    two BLAS threads would otherwise make the next fit of the same process (a search,
    a benchmark) take its own threads for another process's and choose one."""
    now = _machine_sample()
    if now is None:
        return None
    if not _window:
        _window[:] = now
        return None
    (start, busy_start, own_start), (t, busy, own) = _window, now
    if t - start >= 0.5:  # a shorter window says more about noise than about load
        _elsewhere[0] = max(0.0, (busy - busy_start) - (own - own_start)) / (t - start)
        if t - start >= 30.0:  # as the load average, forget what is older than that
            _window[:] = now
    return _elsewhere[0]


def _machine_sample() -> list[float] | None:
    """``[monotonic s, CPU seconds busy on the whole machine, this process's CPU s]``,
    or None where /proc/stat cannot be read (not Linux)."""
    try:
        with open("/proc/stat", "rb") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait (steal is busy)
    return [time.monotonic(), busy / hz, time.process_time()]


def _blas() -> Any:
    """The BLAS libraries loaded (threadpoolctl's controller, made once)."""
    if not _controller:
        from threadpoolctl import ThreadpoolController

        _controller.append(ThreadpoolController().select(user_api="blas"))
    return _controller[0]


def _current() -> int:
    """The current BLAS thread setting (the lowest, where several libraries are loaded)."""
    counts = [lib.get_num_threads() for lib in _blas().lib_controllers]
    return min((c for c in counts if c), default=1)
