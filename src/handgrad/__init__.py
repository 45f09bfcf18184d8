"""handgrad: neural-network classifiers whose every gradient is derived by hand.

The core (:mod:`handgrad.layers`, :class:`MLP`, :class:`TwoLayerNet`,
:mod:`handgrad.gradcheck`), the one training loop (:mod:`handgrad.training`), and a
scikit-learn drop-in :class:`MLPClassifier`.
"""

from typing import Any

from handgrad._threads import threads
from handgrad.gradcheck import check_gradients, numerical_gradient, rel_error
from handgrad.network import MLP
from handgrad.twolayer import TwoLayerNet

__all__ = [
    "MLP",
    "MLPClassifier",
    "TwoLayerNet",
    "check_gradients",
    "numerical_gradient",
    "rel_error",
    "threads",
]


def __getattr__(name: str) -> Any:
    """``MLPClassifier`` is imported on first use: the core needs no scikit-learn, and a
    script that trains ``MLP`` directly does not pay its import time and memory."""
    if name == "MLPClassifier":
        from handgrad.estimator import MLPClassifier

        return MLPClassifier
    raise AttributeError(f"module 'handgrad' has no attribute {name!r}")
