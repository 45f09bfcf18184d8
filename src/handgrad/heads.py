"""One record per hidden activation and per output head: the tables the rest of the
library looks names up in (:data:`ACTIVATIONS`, :data:`HEADS`), as scikit-learn's
``_base.py`` keeps its activations and losses by name.

A record holds no math of its own: it names the reference pair or loss in
:mod:`handgrad.layers`, its in-place form in :mod:`handgrad.inplace` (the fast engine's),
and the text ``explain`` prints. A head's *math* (its loss, its link from scores to
predictions, their formulas) is the :class:`Head`; its *task rules* (which targets it
takes and how they are checked, drawn at random, turned into labels, scored) are the
:class:`Task` it holds, written here as the small functions they are. Adding an
activation or a head is one record here plus its pair (and in-place form); nothing in
the network, the loop or the engine changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

import handgrad.inplace as ip
from handgrad._validation import check_class_indices, check_indicators, check_target_matrix
from handgrad._xp import expit, namespace, overwrite
from handgrad.layers import (
    batchnorm_backward,
    batchnorm_forward,
    dropout_backward,
    dropout_forward,
    exponential,
    identity,
    identity_backward,
    identity_forward,
    layernorm_backward,
    layernorm_forward,
    logistic_backward,
    logistic_forward,
    poisson_deviance,
    relu_backward,
    relu_forward,
    sigmoid,
    sigmoid_cross_entropy,
    softmax,
    softmax_cross_entropy,
    squared_error,
    tanh_backward,
    tanh_forward,
)

Array = NDArray[np.floating]
Forward = Callable[[Array], tuple[Array, tuple]]
Backward = Callable[[Array, tuple], Array]
InPlace = Callable[[Array, Array | None], Array]


@dataclass(frozen=True)
class Activation:
    """One hidden activation in every form the library uses.

    ``forward``/``backward`` are the reference pair. ``forward_(Z, D)`` writes
    ``A = act(Z)`` over Z and, with D given, ``D = act'(Z)``, so that the backward pass
    is ``dZ = dA ⊙ D``; ``needs_derivative`` is False where ``act' = 1`` (no D to keep).
    ``formula`` and ``backward_formula`` are the text ``explain`` prints, with ``{Z}``,
    ``{A}`` and ``{dA}`` standing for the layer's symbols. ``glorot_factor`` is the
    numerator of scikit-learn's uniform bound ``sqrt(factor / (fan_in + fan_out))``.
    """

    name: str
    forward: Forward
    backward: Backward
    forward_: InPlace
    needs_derivative: bool
    formula: str
    backward_formula: str
    glorot_factor: float = 6.0


#: Hidden-layer activations by scikit-learn's names.
ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation(
            "relu",
            relu_forward,
            relu_backward,
            ip.relu_,
            needs_derivative=True,
            formula="ReLU({Z}) = max(0, {Z})",
            backward_formula="{dA} ⊙ [{Z} > 0]",
        ),
        Activation(
            "tanh",
            tanh_forward,
            tanh_backward,
            ip.tanh_,
            needs_derivative=True,
            formula="tanh({Z})",
            backward_formula="{dA} ⊙ (1 − {A}²)",
        ),
        Activation(
            "logistic",
            logistic_forward,
            logistic_backward,
            ip.logistic_,
            needs_derivative=True,
            formula="σ({Z}) = 1 / (1 + e^(−{Z}))",
            backward_formula="{dA} ⊙ {A} ⊙ (1 − {A})",
            glorot_factor=2.0,
        ),
        Activation(
            "identity",
            identity_forward,
            identity_backward,
            ip.identity_,
            needs_derivative=False,
            formula="{Z}",
            backward_formula="{dA}",
        ),
    )
}


# ------------------------------------------------------ normalizations and dropout
@dataclass(frozen=True)
class Norm:
    """One normalization of a hidden layer's ``Z`` (between the affine map and the
    activation), in the form the network calls it.

    ``forward(Z, gamma, beta, running, train) -> (Y, cache, running)``: Z (N, H), γ and
    β (H,) (learned: ``gamma_l``, ``beta_l`` in ``MLP.params``), ``running`` the
    ``(mean, var)`` kept for predict time (``running_mean_l``, ``running_var_l`` in
    ``MLP.state``) or ``()`` where ``keeps_running`` is False; ``backward(dY, cache) ->
    (dZ, dγ, dβ)``. ``forward_``/``backward_`` are the fast engine's in-place forms
    (:mod:`handgrad.inplace`), called by :class:`handgrad.workspace.Workspace` with its
    buffers. ``formula``/``backward_formula`` are ``explain``'s text, ``{Z}``, ``{l}``
    and ``{dY}`` standing for the layer's symbols; ``over`` names the axis its
    statistics are taken along.
    """

    name: str
    forward: Callable[[Array, Array, Array, tuple, bool], tuple[Array, Any, tuple]]
    backward: Callable[[Array, Any], tuple[Array, Array, Array]]
    forward_: Callable[..., Any]
    backward_: Callable[..., Array]
    keeps_running: bool
    formula: str
    backward_formula: str
    over: str


#: ε of every normalization (``nn.BatchNorm1d``'s and ``nn.LayerNorm``'s), and batch
#: norm's momentum (the batch's weight in the running statistics).
NORM_EPS, NORM_MOMENTUM = 1e-5, 0.1


def _batchnorm(Z: Array, gamma: Array, beta: Array, running: tuple, train: bool):
    return batchnorm_forward(Z, gamma, beta, *running, train, NORM_MOMENTUM, NORM_EPS)


def _layernorm(Z: Array, gamma: Array, beta: Array, running: tuple, train: bool):
    return (*layernorm_forward(Z, gamma, beta, NORM_EPS), running)


#: Hidden-layer normalizations by name (``MLP(norm=…)``).
NORMS: dict[str, Norm] = {
    n.name: n
    for n in (
        Norm(
            "batch",
            _batchnorm,
            batchnorm_backward,
            ip.batchnorm_,
            ip.batchnorm_backward_,
            keeps_running=True,
            formula="γ{l} ⊙ ({Z} − μ_B)/√(σ²_B + ε) + β{l}",
            backward_formula="(1/N) γ{l} (σ²_B + ε)^(−1/2) (N {dY} − Σ {dY} − x̂ Σ {dY} ⊙ x̂)",
            over="the batch's rows (predict: running μ, σ²)",
        ),
        Norm(
            "layer",
            _layernorm,
            layernorm_backward,
            ip.layernorm_,
            ip.layernorm_backward_,
            keeps_running=False,
            formula="γ{l} ⊙ ({Z} − μ_i)/√(σ²_i + ε) + β{l}",
            backward_formula="(1/H) (σ²_i + ε)^(−1/2) (H dx̂ − Σ dx̂ − x̂ Σ dx̂ ⊙ x̂), dx̂ = γ{l} ⊙ {dY}",
            over="each row's features",
        ),
    )
}


@dataclass(frozen=True)
class Dropout:
    """Inverted dropout after a hidden activation: the reference pair, the fast engine's
    in-place form and ``explain``'s text (``{A}``, ``{l}`` and ``{dA}`` the layer's
    symbols). Its in-place backward is ``dA *= M / p``, the scale its forward kept."""

    forward: Callable[..., tuple[Array, tuple]]
    backward: Callable[[Array, tuple], Array]
    forward_: Callable[..., Array]
    formula: str = "{A} ⊙ M{l} / p,  M{l} ~ Bernoulli(p = 1 − rate)  (predict: {A})"
    backward_formula: str = "{dA} ⊙ M{l} / p"


DROPOUT = Dropout(dropout_forward, dropout_backward, ip.dropout_)


# ------------------------------------------------------------------ the task rules
@dataclass(frozen=True)
class Task:
    """What a head asks of the data and how its predictions are judged.

    ``encode_targets(y, n_samples, C, dtype)`` checks y and returns the targets T the
    head's losses take; ``random_targets(rng, n, C)`` draws valid ones (for gradient
    checks). ``labels(S)`` predicts from scores (a NumPy S may be overwritten);
    ``right_rows(S, T)`` marks the rows predicted exactly right, or is None for
    regression (no row is "exactly right": training keeps no running accuracy).
    ``score`` names how held-out data is scored (``"accuracy"``, or ``"r2"``);
    ``min_outputs`` is the smallest C the head accepts; ``targets_text`` names the form
    of Y.
    """

    encode_targets: Callable[[Any, int, int, np.dtype], NDArray]
    random_targets: Callable[[np.random.Generator, int, int], NDArray]
    labels: Callable[[Array], NDArray]
    right_rows: Callable[[Array, NDArray], NDArray[np.bool_]] | None
    score: str
    min_outputs: int
    targets_text: str


def _class_indices(y: Any, n_samples: int, C: int, dtype: np.dtype) -> NDArray:
    return check_class_indices(y, n_samples, C)


def _real_targets(y: Any, n_samples: int, C: int, dtype: np.dtype, *, low: float | None = None):
    """y as an (N, C) matrix of finite real targets (``>= low`` where given)."""
    arr = check_target_matrix(y, n_samples, C, "matrix of targets for this regression head")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"y must hold numbers for a regression head, but its dtype is {arr.dtype}")
    arr = arr.astype(dtype)
    if not np.isfinite(arr).all():
        raise ValueError("y must be finite for a regression head (NaN or infinity found)")
    if low is not None and (arr < low).any():
        raise ValueError(
            "y must be non-negative for the poisson head (counts or rates), but has "
            f"{arr[arr < low].ravel()[0]!r}"
        )
    return arr


def _count_targets(y: Any, n_samples: int, C: int, dtype: np.dtype) -> NDArray:
    return _real_targets(y, n_samples, C, dtype, low=0.0)


def _argmax_labels(S: Array) -> NDArray[np.intp]:
    return namespace(S).argmax(S, axis=1)  # the highest score is the likeliest class


def _argmax_right(S: Array, y: NDArray) -> NDArray[np.bool_]:
    return namespace(S).argmax(S, axis=1) == y


def _threshold_labels(S: Array) -> NDArray[np.intp]:
    """0/1 per column, ``σ(S) > 0.5`` as scikit-learn thresholds; (N,) for one column."""
    xp = namespace(S)
    labels = xp.astype(expit(S, overwrite=True) > 0.5, xp.int64)
    return xp.reshape(labels, (-1,)) if labels.shape[1] == 1 else labels


def _threshold_right(S: Array, Y: NDArray) -> NDArray[np.bool_]:
    return namespace(S).all((S > 0) == (Y > 0.5), axis=1)


def _values(in_place: Callable[[Array], Array], reference: Callable[[Array], Array]):
    """A regression head's ``labels``: its predictions P (over a NumPy S), (N,) for one
    output."""

    def labels(S: Array) -> NDArray:
        P = overwrite(S, in_place, reference)
        return namespace(P).reshape(P, (-1,)) if P.shape[1] == 1 else P

    return labels


CLASSES = Task(
    _class_indices,
    lambda rng, n, C: rng.integers(0, C, size=n),
    _argmax_labels,
    _argmax_right,
    score="accuracy",
    min_outputs=2,
    targets_text="one-hot",
)
INDICATORS = Task(
    check_indicators,
    lambda rng, n, C: rng.integers(0, 2, size=(n, C)),
    _threshold_labels,
    _threshold_right,
    score="accuracy",
    min_outputs=1,
    targets_text="0/1",
)
REALS = Task(
    _real_targets,
    lambda rng, n, C: rng.standard_normal((n, C)),
    _values(ip.identity_link_, identity),
    None,
    score="r2",
    min_outputs=1,
    targets_text="real",
)
COUNTS = Task(
    _count_targets,
    lambda rng, n, C: rng.poisson(2.0, size=(n, C)).astype(float),
    _values(ip.exp_, exponential),
    None,
    score="r2",
    min_outputs=1,
    targets_text="count (≥ 0)",
)


# ---------------------------------------------------------------------- the heads
@dataclass(frozen=True)
class Head:
    """One output head (the last layer's link and its loss) in every form, and its task.

    ``loss(S, T, sample_weight) -> (L, dS)`` is the reference; ``loss_(S, T, c, dS,
    buf) -> ℓ (n,)`` the in-place form (see
    :func:`handgrad.inplace.softmax_cross_entropy_`). ``probabilities(S)`` is the link
    from scores S (N, C) to predictions P (probabilities, or a regression head's
    predicted values), a new array in S's namespace; ``probabilities_(S)`` writes P over
    a NumPy S. The ``*_formula`` texts are what ``explain`` prints. ``task`` holds the
    rules for targets, labels and scores (:class:`Task`); ``right_rows`` and ``score``
    are read through the head as well.

    Every head's gradient is ``dS = (P − Y)/N``: softmax and sigmoid cross-entropy,
    squared error on the identity (``P = S``), Poisson deviance on the log link
    (``P = e^S``).
    """

    name: str
    loss: Callable[..., tuple[float, Array]]
    loss_: Callable[..., Array]
    probabilities: Callable[[Array], Array]
    probabilities_: Callable[[Array], Array]
    probabilities_formula: str
    loss_formula: str
    gradient_formula: str
    task: Task

    @property
    def right_rows(self) -> Callable[[Array, NDArray], NDArray[np.bool_]] | None:
        """The task's ``right_rows`` (None for a regression head)."""
        return self.task.right_rows

    @property
    def score(self) -> str:
        """The task's ``score``: ``"accuracy"`` or ``"r2"``."""
        return self.task.score

    def predictions(self, S: Array) -> Array:
        """P (N, C) from scores S: over S itself for NumPy, a new array otherwise."""
        return overwrite(S, self.probabilities_, self.probabilities)


#: Output heads by name: softmax (one label per row) and sigmoid (binary or multi-label)
#: for classification; identity (squared error) and poisson (log link) for regression.
HEADS: dict[str, Head] = {
    h.name: h
    for h in (
        Head(
            "softmax",
            softmax_cross_entropy,
            ip.softmax_cross_entropy_,
            softmax,
            ip.softmax_,
            probabilities_formula="P = softmax(S), row-wise e^S / Σ_cols e^S",
            loss_formula="−(1/N) Σ_i log P[i, y_i]",
            gradient_formula="dS = (P − Y)/N",
            task=CLASSES,
        ),
        Head(
            "sigmoid",
            sigmoid_cross_entropy,
            ip.sigmoid_cross_entropy_,
            sigmoid,
            ip.sigmoid_,
            probabilities_formula="P = σ(S) = 1 / (1 + e^(−S))",
            loss_formula="−(1/N) Σ_i Σ_c [Y log P + (1 − Y) log(1 − P)]",
            gradient_formula="dS = (P − Y)/N",
            task=INDICATORS,
        ),
        Head(
            "identity",
            squared_error,
            ip.squared_error_,
            identity,
            ip.identity_link_,
            probabilities_formula="P = S (identity: the scores are the predictions)",
            loss_formula="(1/2N) Σ_i ‖P_i − Y_i‖²",
            gradient_formula="dS = (P − Y)/N",
            task=REALS,
        ),
        Head(
            "poisson",
            poisson_deviance,
            ip.poisson_deviance_,
            exponential,
            ip.exp_,
            probabilities_formula="P = e^S (log link: the predicted means)",
            loss_formula="(1/N) Σ_i Σ_c [Y log(Y/P) − Y + P]",
            gradient_formula="dS = (P − Y)/N",
            task=COUNTS,
        ),
    )
}
