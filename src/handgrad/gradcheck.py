"""Check hand-derived gradients against centred finite differences.

A gradient derived by the chain rule is only as good as the derivation: these three
functions let anyone confirm that every entry of every ``grads[name]`` agrees with the
slope of the loss measured numerically.

Example
-------
>>> import numpy as np
>>> from handgrad import TwoLayerNet, check_gradients
>>> net = TwoLayerNet(4, 10, 3, std=1e-1, seed=0)
>>> rng = np.random.default_rng(1)
>>> X, y = rng.standard_normal((5, 4)), np.array([0, 1, 2, 2, 1])
>>> errors = check_gradients(net, X, y, reg=0.05)
>>> all(e < 1e-7 for e in errors.values())
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray


def numerical_gradient(
    f: Callable[[NDArray], float],
    x: NDArray,
    h: float = 1e-5,
    *,
    entries: Sequence[tuple[int, ...]] | None = None,
    step: Callable[[], Any] | None = None,
) -> NDArray[np.float64]:
    """Centred finite differences ``(f(x + h e_i) − f(x − h e_i)) / 2h``.

    ``f`` is called with ``x`` itself after one entry was nudged in place (so ``f`` may
    close over the array, as when ``x`` is one of a model's parameters); each entry is
    put back afterwards. The error of each entry is O(h²). Returns an array shaped
    like ``x``, or with ``entries`` (indices into ``x``) the (K,) slopes at those
    entries only. ``step`` is called after each entry (a progress bar's update).
    """
    every = entries is None
    entries = list(np.ndindex(x.shape)) if every else entries
    grad = np.zeros(x.shape if every else len(entries), dtype=np.float64)
    for k, i in enumerate(entries):
        original = x[i]
        x[i] = original + h
        f_plus = f(x)
        x[i] = original - h
        f_minus = f(x)
        x[i] = original
        grad[i if every else k] = (f_plus - f_minus) / (2 * h)
        if step is not None:
            step()
    return grad


def sample_entries(
    shape: tuple[int, ...], count: int, rng: np.random.Generator
) -> list[tuple[int, ...]]:
    """``count`` distinct entries of an array of ``shape``, drawn by ``rng`` (all of them
    when it has no more), as CS231n's ``grad_check_sparse`` checks a random few."""
    size = int(np.prod(shape))
    flat = np.sort(rng.choice(size, size=min(count, size), replace=False))
    return [tuple(int(j) for j in np.unravel_index(i, shape)) for i in flat]


def rel_error(a: Any, b: Any) -> float:
    """Largest elementwise relative error ``|a − b| / max(1e-8, |a| + |b|)``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error needs equal shapes, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def norm_error(a: Any, b: Any) -> float:
    """Relative error of the whole array, ``‖a − b‖ / max(1e-300, ‖a‖ + ‖b‖)``.

    Useful where many entries are near zero (a trained model), so that rounding alone
    gives single entries a large :func:`rel_error`.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(float(np.linalg.norm(a) + np.linalg.norm(b)), 1e-300)
    return float(np.linalg.norm(a - b)) / scale


def gradient_errors(
    model: Any,
    X: Any,
    y: Any,
    reg: float = 0.0,
    sample_weight: Any = None,
    h: float = 1e-5,
    *,
    samples: int | None = None,
    seed: int = 0,
    progress: bool = False,
    context: Callable[[], Any] | None = None,
) -> dict[str, tuple[float, float]]:
    """Per parameter, ``(rel_error, norm_error)`` of analytic vs numerical gradient.

    Every entry, or with ``samples`` that many entries of each parameter drawn at random
    (seeded by ``seed``): two loss evaluations per entry make a full check of a large
    model slow, and a wrong derivation shows in any few entries. ``progress`` shows a
    progress bar over the entries. See :func:`check_gradients`, which returns the first
    of the two errors.

    ``context`` makes the forward pass's :class:`~handgrad.network.Context` afresh for
    each evaluation: a training context whose generator is seeded the same each time
    checks batch normalization on the batch's statistics and dropout with one fixed
    mask (the loss is then a fixed function of the parameters).
    """
    model = model.copy(np.float64)
    kwargs = {} if context is None else {"ctx": context()}
    _, grads = model.loss(X, y, reg=reg, sample_weight=sample_weight, **kwargs)
    # L alone where the model offers it (an MLP): a difference needs no backward pass
    objective = getattr(model, "objective", None)

    def f(_: NDArray) -> float:
        kwargs = {} if context is None else {"ctx": context()}
        if objective is not None:
            return objective(X, y, reg, sample_weight, **kwargs)
        return model.loss(X, y, reg=reg, sample_weight=sample_weight, **kwargs)[0]

    rng = np.random.default_rng(seed)
    chosen = {
        name: None if samples is None else sample_entries(param.shape, samples, rng)
        for name, param in model.params.items()
    }
    total = sum(p.size if chosen[n] is None else len(chosen[n]) for n, p in model.params.items())
    from tqdm.auto import tqdm

    errors = {}
    with tqdm(total=total, unit="entry", disable=not progress, leave=False) as bar:
        for name, param in model.params.items():
            entries = chosen[name]
            numeric = numerical_gradient(f, param, h, entries=entries, step=bar.update)
            analytic = grads[name] if entries is None else [grads[name][i] for i in entries]
            errors[name] = (rel_error(analytic, numeric), norm_error(analytic, numeric))
    return errors


def check_gradients(
    model: Any,
    X: Any,
    y: Any,
    reg: float = 0.0,
    sample_weight: Any = None,
    h: float = 1e-5,
) -> dict[str, float]:
    """Max relative error between analytic and numerical gradients, per parameter.

    ``model`` is an :class:`~handgrad.MLP` (or anything with ``params``, ``copy(dtype)``
    and ``loss(X, y, reg, sample_weight) -> (loss, grads)``). The check runs on a
    float64 copy, so the model itself is never changed. Errors below about 1e-7 mean
    the derivation and the code agree; errors near 1 mean a wrong gradient (ReLU kinks
    within ``h`` of a ``Z`` entry can also give a rare large error).
    """
    errors = gradient_errors(model, X, y, reg, sample_weight, h)
    return {name: entry for name, (entry, _) in errors.items()}
