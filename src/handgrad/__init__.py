"""handgrad: neural-network classifiers whose every gradient is derived by hand.

The core (:mod:`handgrad.layers`, :class:`MLP`, :class:`TwoLayerNet`,
:mod:`handgrad.gradcheck`), the one training loop (:mod:`handgrad.training`), and a
scikit-learn drop-in :class:`MLPClassifier`.
"""

from handgrad.estimator import MLPClassifier
from handgrad.gradcheck import check_gradients, numerical_gradient, rel_error
from handgrad.network import MLP, TwoLayerNet

__all__ = [
    "MLP",
    "MLPClassifier",
    "TwoLayerNet",
    "check_gradients",
    "numerical_gradient",
    "rel_error",
]
