"""BLAS threads chosen by the size of the work, only inside handgrad's calls, never above
the user's own limit, and overridable."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import handgrad._threads as threads_module
import handgrad.network as network
from handgrad import MLP, MLPClassifier
from handgrad._threads import WORK_PER_THREAD, blas_threads, choose_threads, threads
from handgrad.optim import SGD
from handgrad.training import Callback, TrainingConfig, fit

DIGITS = (64, 100, 10)
MNIST = (784, 256, 10)
two_cpus = pytest.mark.skipif(
    threads_module._usable_cpus() < 2 or threads_module._current() < 2,
    reason="needs two CPUs and a BLAS allowed two threads",
)


def current() -> int:
    return threads_module._current()


def test_one_thread_per_share_of_the_largest_product():
    assert choose_threads(200, DIGITS, available=16) == 1  # 1.3 M multiply-adds
    assert choose_threads(200, MNIST, available=16) == 200 * 784 * 256 // WORK_PER_THREAD == 5
    assert choose_threads(200, (3072, 100, 10), available=16) == 7
    assert choose_threads(200, MNIST, available=2) == 2
    assert choose_threads(1, MNIST, available=8) == 1
    assert choose_threads(200, (10, 400, 300, 2), available=64) == 3  # the middle product


@two_cpus
def test_a_small_fit_runs_on_one_thread_and_restores_the_setting_after():
    seen = []

    class Record(Callback):
        def on_epoch_end(self, run):
            seen.append(current())

    before = current()
    X = np.random.default_rng(0).standard_normal((400, 64))
    y = np.arange(400) % 10
    model = MLP(64, (100,), 10, seed=0)
    config = TrainingConfig(batch_size=200, max_epochs=2, stopping="none")
    fit(model, X, y, optimizer=SGD(0.01), config=config, callbacks=[Record()])
    assert seen == [1, 1]
    assert current() == before


@two_cpus
def test_the_user_limit_is_a_ceiling_and_an_explicit_count_is_exact():
    with threadpool_limits(1):
        with blas_threads(2048, MNIST):  # work for every CPU: still the user's one
            assert current() == 1
        with threads(2), blas_threads(1, DIGITS):  # asked for: exactly two
            assert current() == 2
        assert current() == 1
    with threads(1), blas_threads(2048, MNIST):
        assert current() == 1


def test_tiny_work_leaves_the_pool_alone(monkeypatch):
    def no_pool():
        raise AssertionError("the BLAS pool was looked at")

    monkeypatch.setattr(threads_module, "_blas", no_pool)
    with blas_threads(1, MNIST):  # 200 k multiply-adds: BLAS runs one thread anyway
        pass
    X = np.random.default_rng(0).standard_normal((40, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier((3,), max_iter=2, random_state=0).fit(X, np.arange(40) % 2)
    assert clf.predict(X[:1]).shape == (1,)


@two_cpus
def test_prediction_chooses_threads_per_chunk(monkeypatch):
    seen = []
    real = network.scores

    def recording(*args, **kwargs):
        seen.append(current())
        return real(*args, **kwargs)

    monkeypatch.setattr(network, "scores", recording)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier((100,), max_iter=1, random_state=0).fit(X, np.arange(300) % 10)
    before = current()
    clf.predict_proba(X[:100])  # 100 × 64 × 100: one thread
    with threads(2):
        clf.predict(X[:100])
    assert seen == [1, 2] and current() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_threads_rejects_anything_but_a_positive_int_or_none(bad):
    with pytest.raises(ValueError, match=f"threads must be a positive int or None, got {bad!r}"):
        with threads(bad):
            pass


@two_cpus
def test_limits_that_overlap_out_of_order_put_back_the_users_setting():
    """Two Python threads predicting at once enter and leave in any order."""
    before = current()
    first, second = threads_module._Limit(1), threads_module._Limit(1)
    first.__enter__()
    second.__enter__()
    assert current() == 1
    first.__exit__(None, None, None)  # leaves first: the other still holds a limit
    second.__exit__(None, None, None)
    assert current() == before


def test_cpus_busy_with_other_processes_are_not_counted(monkeypatch):
    monkeypatch.setattr(threads_module, "_busy_elsewhere", lambda: None)  # the load average's
    monkeypatch.setattr(threads_module, "_usable_cpus", lambda: 16)
    monkeypatch.setattr(threads_module.os, "cpu_count", lambda: 16)
    for load, free in [(0.2, 16), (1.0, 16), (2.0, 15), (9.4, 8), (40.0, 1)]:
        monkeypatch.setattr(threads_module.os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert threads_module._free_cpus() == free
        assert choose_threads(200, MNIST) == min(5, free)
    monkeypatch.setattr(threads_module, "_usable_cpus", lambda: 4)  # 4 of the 16 CPUs
    monkeypatch.setattr(threads_module.os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert threads_module._free_cpus() == 2  # the other processes' share of these 4


def test_this_process_own_cpu_time_is_not_counted_as_other_processes(monkeypatch):
    # A fit on two BLAS threads keeps the machine busy: the next fit of the same process
    # must not take that for other processes' work and choose one thread.
    monkeypatch.setattr(threads_module, "_usable_cpus", lambda: 2)
    monkeypatch.setattr(threads_module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads_module.os, "getloadavg", lambda: (2.1, 0.0, 0.0))
    samples = iter([[100.0, 500.0, 10.0], [110.0, 519.0, 28.0], [120.0, 538.0, 29.0]])
    monkeypatch.setattr(threads_module, "_machine_sample", lambda: next(samples))
    monkeypatch.setattr(threads_module, "_window", [])
    monkeypatch.setattr(threads_module, "_elsewhere", [None])
    assert threads_module._free_cpus() == 1  # no window yet: the load average, less one
    # 19 busy CPU seconds in 10 s, 18 of them this process's: 0.1 CPU elsewhere
    assert threads_module._busy_elsewhere() == pytest.approx(0.1)
    # then 19 more, 1 of them ours: over the 20 s, 19 CPU s were another process's
    assert threads_module._free_cpus() == 1
    assert threads_module._elsewhere[0] == pytest.approx(0.95)


def test_busy_elsewhere_needs_a_window_and_forgets_after_half_a_minute(monkeypatch):
    samples = iter(
        [
            [100.0, 500.0, 10.0],  # the window starts
            [100.2, 500.2, 10.0],  # 0.2 s: too short to say
            [140.0, 540.0, 30.0],  # 40 s: 20 CPU s elsewhere, 0.5 CPU; a new window
            [145.0, 550.0, 30.0],  # 5 s of the new window: 2 CPUs elsewhere
        ]
    )
    monkeypatch.setattr(threads_module, "_machine_sample", lambda: next(samples))
    monkeypatch.setattr(threads_module, "_window", [])
    monkeypatch.setattr(threads_module, "_elsewhere", [None])
    assert threads_module._busy_elsewhere() is None
    assert threads_module._busy_elsewhere() is None
    assert threads_module._busy_elsewhere() == pytest.approx(0.5)
    assert threads_module._busy_elsewhere() == pytest.approx(2.0)


def test_machine_sample_reads_this_machine():
    sample = threads_module._machine_sample()
    if sample is None:
        pytest.skip("no /proc/stat here")
    t, busy, own = sample
    assert t > 0 and busy > 0 and own > 0
    assert threads_module._machine_sample()[1] >= busy  # cumulative
