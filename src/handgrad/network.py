"""``MLP``: parameters, initialisation, loss and gradients, prediction.

The network is ``Z_l = A_{l−1} W_l + b_l``, ``A_l = act(Z_l)`` for the hidden layers
(``A_0 = X``) and scores ``S = A_{L−1} W_L + b_L``; the head is softmax (one label per
row) or sigmoid (binary or multi-label). With one hidden layer this is exactly the
notes: ``Z1 = X W1 + b1``, ``A1 = ReLU(Z1)``, ``S = A1 W2 + b2``.

Parameters live in ``params``, a plain dict named in the notes' notation
``W1, b1, W2, b2, …``. ``loss`` follows CS231n's contract: scores without ``y``,
``(loss, grads)`` with it. The activation and the head are looked up by name in
:data:`handgrad.heads.ACTIVATIONS` and :data:`handgrad.heads.HEADS`. CS231n's
``TwoLayerNet``, which trains itself, is in :mod:`handgrad.twolayer`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from handgrad._validation import (
    check_choice,
    check_memory,
    check_number,
    check_sample_weight,
    check_X,
)
from handgrad._xp import (
    check_same_place,
    copy,
    copy_into,
    device,
    is_numpy,
    namespace,
    numpy_dtype,
    to_device,
    to_numpy,
)
from handgrad.heads import ACTIVATIONS, DROPOUT, HEADS, NORMS
from handgrad.layers import affine_backward, affine_forward, l2_penalty
from handgrad.workspace import scores

INITS = ("glorot", "he", "normal")
DTYPES = (np.float32, np.float64)
Params = dict[str, NDArray[np.floating]]


@dataclass(frozen=True)
class Context:
    """How a forward pass runs: ``train`` (batch statistics and dropout masks) or
    predict time (running statistics, no dropout), and the generator dropout draws its
    masks from (the run's, so that a resumed run draws the same masks).

    The engine passes a training context to the forward pass of its steps; ``predict``
    and held-out scores take the default, :data:`PREDICT`.
    """

    train: bool = False
    rng: np.random.Generator | None = None


#: Predict time: running statistics, no dropout.
PREDICT = Context()


def as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, or the generator itself."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


class MLP:
    """A fully connected classifier of any depth with hand-derived gradients.

    Parameters
    ----------
    input_size, hidden_sizes, output_size
        D, the hidden widths (H1, H2, …; empty for a linear model) and C.
    activation
        Hidden activation: ``"relu"`` (default), ``"tanh"``, ``"logistic"``, ``"identity"``.
    head
        ``"softmax"`` (y: class indices) or ``"sigmoid"`` (y: 0/1 per output column).
    init
        ``"glorot"``: scikit-learn's uniform ±sqrt(6/(fan_in+fan_out)) for weights and
        biases (factor 2 for logistic); ``"he"``: normal with std sqrt(2/fan_in), zero
        biases; ``"normal"``: ``std`` × standard normal, zero biases (CS231n).
    seed
        Seed or ``numpy.random.Generator`` for the initial weights.
    dtype
        ``np.float32`` or ``np.float64``; kept by ``loss`` and by training.
    dropout
        Inverted dropout's drop probability after every hidden activation (0: none).
    norm
        ``None``, ``"batch"`` or ``"layer"``: a normalization of every hidden ``Z_l``
        before its activation (:data:`handgrad.heads.NORMS`), with learned ``gamma_l``
        (ones) and ``beta_l`` (zeros) in ``params``; batch norm's running mean and
        variance live in ``state`` (``running_mean_l``, ``running_var_l``), which no
        optimizer sees. Drawn after the weights: the weights are those of the same
        network without it.

    The parameters are drawn as NumPy arrays; :meth:`to` moves them to another
    array-API library and device (PyTorch, CuPy …), where ``forward``, ``backward``,
    ``loss`` and prediction then run on arrays of that library.

    Examples
    --------
    >>> net = MLP(4, (5,), 3, seed=0)
    >>> X = np.ones((2, 4)); y = np.array([0, 2])
    >>> loss, grads = net.loss(X, y, reg=0.1)
    >>> sorted(grads) == sorted(net.params) == ['W1', 'W2', 'b1', 'b2']
    True
    """

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int] = (100,),
        output_size: int = 2,
        *,
        activation: str = "relu",
        head: str = "softmax",
        init: str = "glorot",
        std: float = 1e-4,
        seed: int | np.random.Generator | None = None,
        dtype: DTypeLike = np.float64,
        dropout: float = 0.0,
        norm: str | None = None,
    ) -> None:
        sizes = [input_size, *hidden_sizes, output_size]
        names = ["input_size"] + [f"hidden size {i + 1}" for i in range(len(sizes) - 2)]
        for value, name in zip(sizes, [*names, "output_size"], strict=True):
            check_number(value, name, low=1, integer=True)
        check_choice(activation, "activation", ACTIVATIONS)
        check_choice(head, "head", HEADS)
        check_choice(init, "init", INITS)
        check_number(std, "std", low=0, low_open=True)
        check_number(dropout, "dropout", low=0, high=1, high_open=True)
        if norm is not None:
            check_choice(norm, "norm", NORMS)
        if np.dtype(dtype) not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, but got {np.dtype(dtype)}")
        if output_size < HEADS[head].task.min_outputs:
            raise ValueError(
                f"the {head} head needs output_size >= {HEADS[head].task.min_outputs}; "
                "use head='sigmoid'"
            )
        self.layer_sizes = tuple(int(s) for s in sizes)
        check_memory(
            params_nbytes(self.layer_sizes, dtype),
            f"the network {describe_sizes(self.layer_sizes)} ({np.dtype(dtype).name})",
            "for its weights",
            "use fewer or smaller hidden layers",
        )
        self.activation = activation
        self.head = head
        self.init = init
        self.std = float(std)
        self.dropout = float(dropout)
        self.norm = norm
        self.params: Params = _initial_params(
            self.layer_sizes, init, std, activation, as_rng(seed), np.dtype(dtype)
        )
        self.state: Params = {}
        if norm is not None:
            self.params |= _norm_params(self.hidden_sizes, "gamma", "beta", np.dtype(dtype))
            if NORMS[norm].keeps_running:
                names = ("running_var", "running_mean")  # ones, zeros
                self.state = _norm_params(self.hidden_sizes, *names, np.dtype(dtype))

    # ------------------------------------------------------------------ properties
    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters (and of every computation), as NumPy names it
        whichever library holds them."""
        return numpy_dtype(self.params["W1"].dtype)

    @property
    def n_layers(self) -> int:
        """Number of affine layers L (hidden layers + 1)."""
        return len(self.layer_sizes) - 1

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return self.layer_sizes[1:-1]

    @property
    def weights(self) -> list[NDArray[np.floating]]:
        """``[W1, …, WL]``: the matrices the L2 penalty applies to."""
        return [self.params[f"W{l}"] for l in range(1, self.n_layers + 1)]

    @property
    def biases(self) -> list[NDArray[np.floating]]:
        return [self.params[f"b{l}"] for l in range(1, self.n_layers + 1)]

    @property
    def plain(self) -> bool:
        """Whether every hidden layer is ``act(A W + b)`` alone (no normalization, no
        dropout): the layers the chunked predict path (:func:`handgrad.workspace.scores`)
        computes; the others predict by :meth:`forward`."""
        return self.norm is None and self.dropout == 0

    # ------------------------------------------------------------ forward/backward
    def forward(self, X: NDArray, ctx: Context = PREDICT) -> tuple[NDArray, list]:
        """Scores ``S`` (N, C) and the per-layer caches, by the reference layer functions.

        Each hidden layer is ``Z_l = A_{l−1} W_l + b_l``, then the normalization
        ``Y_l = norm(Z_l)`` (if any), ``A_l = act(Y_l)``, then dropout (if any). In a
        training context (``ctx.train``) batch norm uses the batch's statistics and
        moves ``state``'s running ones; dropout draws its masks from ``ctx.rng``.
        """
        act_forward = ACTIVATIONS[self.activation].forward
        A, caches = X, []
        for l in range(1, self.n_layers + 1):
            Z, affine_cache = affine_forward(A, self.params[f"W{l}"], self.params[f"b{l}"])
            if l == self.n_layers:
                caches.append((affine_cache, None, None, None))
                return Z, caches
            norm_cache = None
            if self.norm is not None:
                Z, norm_cache = self._norm_forward(Z, l, ctx.train)
            A, act_cache = act_forward(Z)
            drop_cache = None
            if self.dropout:
                A, drop_cache = DROPOUT.forward(A, self.dropout, ctx.rng, ctx.train)
            caches.append((affine_cache, norm_cache, act_cache, drop_cache))
        raise AssertionError("unreachable")

    def _norm_forward(self, Z: NDArray, l: int, train: bool) -> tuple[NDArray, Any]:
        """Layer l's normalization of Z (N, H_l); a training step's running statistics
        replace ``state``'s. A batch of one row has no variance of its own (the last
        batch of an epoch may be one): it is normalized by the running statistics, as
        at predict time, and leaves them as they are."""
        norm = NORMS[self.norm]
        train = train and (Z.shape[0] > 1 or not norm.keeps_running)
        names = (f"running_mean{l}", f"running_var{l}") if norm.keeps_running else ()
        running = tuple(self.state[k] for k in names)
        Y, cache, running = norm.forward(
            Z, self.params[f"gamma{l}"], self.params[f"beta{l}"], running, train
        )
        if train:
            self.state.update(zip(names, running, strict=True))
        return Y, cache

    def backward(self, dS: NDArray, caches: list, reg: float) -> Params:
        """Gradients of every parameter from ``dS = ∂L/∂S`` (N, C), by the chain rule.

        For l = L … 1: ``dW_l = A_{l−1}ᵀ dZ_l + λ W_l``, ``db_l = Σ_rows dZ_l``,
        ``dA_{l−1} = dZ_l W_lᵀ`` and ``dZ_{l−1} = dA_{l−1} ⊙ act'(Z_{l−1})``, with
        ``dZ_L = dS``. Returns a dict keyed like ``params``.
        """
        act_backward = ACTIVATIONS[self.activation].backward
        norm_backward = None if self.norm is None else NORMS[self.norm].backward
        reg_grads = l2_penalty(self.weights, reg)[1] if reg else None  # λ W_l
        grads: Params = {}
        dZ = dS
        for l in range(self.n_layers, 0, -1):
            affine_cache = caches[l - 1][0]
            if l > 1:
                dA, dW, db = affine_backward(dZ, affine_cache)
            else:  # no dX: nothing needs it, and for a sparse X it would be (N, D) dense
                X, _ = affine_cache
                dW, db = X.T @ dZ, namespace(dZ).sum(dZ, axis=0)
            grads[f"W{l}"] = dW if reg_grads is None else dW + reg_grads[l - 1]
            grads[f"b{l}"] = db
            if l > 1:
                _, norm_cache, act_cache, drop_cache = caches[l - 2]
                if drop_cache is not None:
                    dA = DROPOUT.backward(dA, drop_cache)
                dZ = act_backward(dA, act_cache)
                if norm_backward is not None:
                    dZ, grads[f"gamma{l - 1}"], grads[f"beta{l - 1}"] = norm_backward(
                        dZ, norm_cache
                    )
        return grads

    def data_loss(self, S: NDArray, T: NDArray, sample_weight: NDArray | None):
        """The head's mean loss and ``dS`` for encoded targets T."""
        return HEADS[self.head].loss(S, T, sample_weight)

    def loss(
        self,
        X: NDArray,
        y: NDArray | None = None,
        reg: float = 0.0,
        sample_weight: NDArray | None = None,
        ctx: Context = PREDICT,
    ) -> NDArray | tuple[float, Params]:
        """Scores, or the loss and every gradient (CS231n's contract).

        X: (N, D). Without ``y`` returns the scores S (N, C). With ``y`` — (N,) class
        indices for the softmax head, (N, C) or (N,) 0/1 indicators for the sigmoid
        head — returns ``(L, grads)`` where ``L = mean cross-entropy + λ/2 Σ‖W_l‖²``
        (λ = ``reg``; biases not penalised) and ``grads`` is keyed like ``params``.

        X may be an array of the parameters' library (see :meth:`to`); y and
        sample_weight are then checked on the host and moved to X's device once.
        ``ctx`` is how the forward pass runs (:class:`Context`): predict time unless a
        training context is given (a gradient check's, with a fixed dropout mask).
        """
        if not is_numpy(self.params["W1"]) or (y is None and not self.plain):
            return self._loss_on_device(X, y, reg, sample_weight, ctx)
        if y is None:  # finiteness is tested chunk by chunk, while each is in cache
            return scores(
                self.params,
                check_X(X, n_features=self.layer_sizes[0], dtype=self.dtype, finite=False),
                self.activation,
                check_finite=True,
            )
        loss, grads, _ = self.loss_and_gradients(*self._checked(X, y, reg, sample_weight), ctx)
        return loss, grads

    def objective(
        self,
        X: NDArray,
        y: NDArray,
        reg: float = 0.0,
        sample_weight: NDArray | None = None,
        ctx: Context = PREDICT,
    ) -> float:
        """``L``, the loss of :meth:`loss`, alone: forward, the head's loss and the
        penalty, with no backward pass (each finite difference of a gradient check needs
        only L, :func:`handgrad.gradcheck.gradient_errors`)."""
        if not is_numpy(self.params["W1"]):
            return float(self._loss_on_device(X, y, reg, sample_weight, ctx)[0])
        X, T, reg, w = self._checked(X, y, reg, sample_weight)
        S, _ = self.forward(X, ctx)
        return float(self.data_loss(S, T, w)[0] + l2_penalty(self.weights, reg)[0])

    def _checked(self, X: Any, y: Any, reg: float, sample_weight: Any) -> tuple:
        """``(X, T, reg, w)`` checked against the network, for NumPy parameters."""
        X = check_X(X, n_features=self.layer_sizes[0], dtype=self.dtype)
        check_number(reg, "reg", low=0)
        T = self.encode_targets(y, X.shape[0])
        return X, T, reg, check_sample_weight(sample_weight, X.shape[0], self.dtype)

    def _loss_on_device(self, X, y, reg, sample_weight, ctx=PREDICT):
        """:meth:`loss` by the reference: for parameters of another array-API library,
        or scores of a network with layers beyond the plain ones."""
        X = self._check_input(X)
        if y is None:
            return self.forward(X, ctx)[0]
        check_number(reg, "reg", low=0)
        xp, dev = namespace(X), device(X)
        T = to_device(self.encode_targets(to_numpy(y), X.shape[0]), xp, dev)
        w = check_sample_weight(to_numpy(sample_weight), X.shape[0], self.dtype)
        loss, grads, _ = self.loss_and_gradients(X, T, reg, to_device(w, xp, dev), ctx)
        return float(loss), grads

    def _check_input(self, X: Any, name: str = "X") -> Any:
        """X checked (:func:`handgrad._validation.check_X`) against the network: its
        width, its dtype, and for parameters of another library, that library and
        device (a clear error rather than one from inside it)."""
        check_same_place(X, self.params["W1"], name, "move the network with MLP.to")
        return check_X(X, n_features=self.layer_sizes[0], dtype=self.dtype, name=name)

    def to(self, xp: Any, device: Any = None) -> MLP:
        """Move the parameters (in place, once) to array namespace ``xp`` on ``device``:
        e.g. ``net.to(array_api_compat.torch, "cuda")``, or ``net.to(numpy)`` back to
        the host. Returns the network."""
        for name in ("params", "state"):
            host = {k: to_numpy(v) for k, v in getattr(self, name).items()}
            setattr(self, name, {k: to_device(v, xp, device) for k, v in host.items()})
        return self

    def loss_and_gradients(
        self,
        X: NDArray,
        T: NDArray,
        reg: float,
        sample_weight: NDArray | None = None,
        ctx: Context = PREDICT,
    ) -> tuple[float, Params, NDArray]:
        """``(loss, grads, S)`` without input checks, for checked X and encoded targets T.

        The loss is a float, or for arrays of another library a 0-d array on their
        device (the caller brings it to the host once: ``float(loss)``).

        This is the reference engine: forward, the head's loss, backward, each by the
        functions of :mod:`handgrad.layers`. The training loop's fast engine computes the
        same in preallocated buffers (:class:`handgrad.workspace.Workspace`); the tests
        hold the two equal. A training step passes a training ``ctx``.
        """
        S, caches = self.forward(X, ctx)
        data_loss, dS = self.data_loss(S, T, sample_weight)
        penalty, _ = l2_penalty(self.weights, reg)
        return data_loss + penalty, self.backward(dS, caches, reg), S

    def encode_targets(self, y: Any, n_samples: int) -> NDArray:
        """Checked targets for the head: class indices (softmax) or 0/1 floats (sigmoid)."""
        encode = HEADS[self.head].task.encode_targets
        return encode(y, n_samples, self.layer_sizes[-1], self.dtype)

    # ------------------------------------------------------------------ prediction
    def predict_proba(self, X: NDArray) -> NDArray:
        """P (N, C): softmax rows, or per-column sigmoid probabilities.

        Computed in the model's dtype, in place over the scores (no second (N, C) array);
        for parameters of another library, in that library by the reference.
        """
        return HEADS[self.head].predictions(self.loss(X))

    def predict(self, X: NDArray) -> NDArray:
        """Class indices (N,) for softmax; 0/1 of shape (N,) (C = 1) or (N, C) for sigmoid."""
        return HEADS[self.head].task.labels(self.loss(X))

    # -------------------------------------------------------------------- copying
    def copy(self, dtype: DTypeLike | None = None) -> MLP:
        """A deep copy, optionally cast to another float dtype."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        new.params = {k: copy(v, dtype) for k, v in self.params.items()}
        new.state = {k: copy(v, dtype) for k, v in self.state.items()}
        return new

    def snapshot(self) -> Params:
        """Copies of everything that predicts: the parameters and the running statistics
        (where the arrays are: on another library's device, there)."""
        return {k: copy(v) for k, v in (*self.params.items(), *self.state.items())}

    def restore(self, snapshot: Params) -> None:
        """Put back what :meth:`snapshot` copied, in place."""
        for k, v in snapshot.items():
            copy_into(self.params[k] if k in self.params else self.state[k], v)

    def __repr__(self) -> str:
        extra = "" if self.norm is None else f", norm={self.norm!r}"
        extra += f", dropout={self.dropout:g}" if self.dropout else ""
        return (
            f"{type(self).__name__}({describe_sizes(self.layer_sizes)}, "
            f"activation={self.activation!r}, head={self.head!r}{extra}, "
            f"dtype={self.dtype.name})"
        )


def params_nbytes(layer_sizes: Sequence[int], dtype: DTypeLike) -> int:
    """Bytes of the parameters ``W_l`` (fan_in, fan_out) and ``b_l`` (fan_out,)."""
    count = sum((fan_in + 1) * fan_out for fan_in, fan_out in itertools.pairwise(layer_sizes))
    return count * np.dtype(dtype).itemsize


def describe_sizes(layer_sizes: Sequence[int]) -> str:
    """``4→100→3``: the layer sizes as messages and ``repr`` show them."""
    return "→".join(map(str, layer_sizes))


def _initial_params(
    sizes: tuple[int, ...],
    init: str,
    std: float,
    activation: str,
    rng: np.random.Generator,
    dtype: np.dtype,
) -> Params:
    """``W_l`` (fan_in, fan_out) and ``b_l`` (fan_out,) for every layer, drawn from rng."""
    params: Params = {}
    for l, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
        if init == "glorot":
            bound = np.sqrt(ACTIVATIONS[activation].glorot_factor / (fan_in + fan_out))
            W = rng.uniform(-bound, bound, (fan_in, fan_out))
            b = rng.uniform(-bound, bound, fan_out)
        elif init == "he":
            W = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
            b = np.zeros(fan_out)
        else:
            W = std * rng.standard_normal((fan_in, fan_out))
            b = np.zeros(fan_out)
        params[f"W{l}"] = W.astype(dtype)
        params[f"b{l}"] = b.astype(dtype)
    return params


def _norm_params(hidden_sizes: Sequence[int], ones: str, zeros: str, dtype: np.dtype) -> Params:
    """``{ones}_l`` = 1 and ``{zeros}_l`` = 0, (H_l,), for every hidden layer l: γ and
    β (the identity map), or the running variance and mean (the standard normal)."""
    arrays: Params = {}
    for l, H in enumerate(hidden_sizes, start=1):
        arrays[f"{ones}{l}"] = np.ones(H, dtype)
        arrays[f"{zeros}{l}"] = np.zeros(H, dtype)
    return arrays
