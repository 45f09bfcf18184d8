"""CS231n's ``TwoLayerNet``: the notes' network with its own ``train``.

It sits above :mod:`handgrad.training`: the network is an :class:`~handgrad.network.MLP`
fixed to ``X → affine → ReLU → affine → softmax``, and ``train`` runs the one training
loop with CS231n's arguments and return value.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike, NDArray

from handgrad._validation import check_number
from handgrad.network import MLP
from handgrad.optim import SGD, StepDecay
from handgrad.training import TrainingConfig, fit


class TwoLayerNet(MLP):
    """The notes' network: ``X → affine → ReLU → affine → softmax``, CS231n-compatible.

    Weights are ``std`` × standard normal, biases zero. ``params`` holds ``W1`` (D, H),
    ``b1`` (H,), ``W2`` (H, C), ``b2`` (C,).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        std: float = 1e-4,
        seed: int | np.random.Generator | None = None,
        dtype: DTypeLike = np.float64,
    ) -> None:
        super().__init__(
            input_size,
            (hidden_size,),
            output_size,
            activation="relu",
            head="softmax",
            init="normal",
            std=std,
            seed=seed,
            dtype=dtype,
        )

    def train(
        self,
        X: NDArray,
        y: NDArray,
        X_val: NDArray,
        y_val: NDArray,
        learning_rate: float = 1e-3,
        learning_rate_decay: float = 0.95,
        reg: float = 5e-6,
        num_iters: int = 100,
        batch_size: int = 200,
        verbose: bool = False,
        seed: int | np.random.Generator | None = None,
    ) -> dict[str, list[float]]:
        """Minibatch SGD, CS231n's contract, run by the one training loop.

        The rate is multiplied by ``learning_rate_decay`` once per epoch; training
        stops after ``num_iters`` minibatch steps. Returns ``loss_history`` (per
        step), ``train_acc_history`` and ``val_acc_history`` (per epoch).
        """
        check_number(num_iters, "num_iters", low=1, integer=True)
        history = fit(
            self,
            X,
            y,
            optimizer=SGD(learning_rate, schedule=StepDecay(learning_rate_decay)),
            config=TrainingConfig(
                batch_size=batch_size,
                max_epochs=None,
                max_steps=num_iters,
                reg=reg,
                reg_per_sample=False,
                stopping="none",
                verbose=verbose,
            ),
            validation=(X_val, y_val),
            seed=seed,
        )
        return {
            "loss_history": history.step_loss,
            "train_acc_history": history.train_score,
            "val_acc_history": history.val_score,
        }
