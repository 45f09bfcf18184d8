"""handgrad: neural-network classifiers and regressors whose every gradient is derived by hand.

The core (:mod:`handgrad.layers`, :class:`MLP`, :class:`TwoLayerNet`,
:mod:`handgrad.gradcheck`), the one training loop (:mod:`handgrad.training`), and a
scikit-learn drop-in :class:`MLPClassifier` and :class:`MLPRegressor`.
"""

from typing import Any

from handgrad.gradcheck import check_gradients, numerical_gradient, rel_error
from handgrad.network import MLP
from handgrad.twolayer import TwoLayerNet

__all__ = [
    "MLP",
    "MLPClassifier",
    "MLPRegressor",
    "TwoLayerNet",
    "check_gradients",
    "numerical_gradient",
    "rel_error",
]


def __getattr__(name: str) -> Any:
    """The estimators are imported on first use: the core needs no scikit-learn, and a
    script that trains ``MLP`` directly does not pay its import time and memory."""
    if name in ("MLPClassifier", "MLPRegressor"):
        import handgrad.estimator as estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'handgrad' has no attribute {name!r}")
