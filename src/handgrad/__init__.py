"""handgrad: neural-network classifiers whose every gradient is derived by hand.

The core (:mod:`handgrad.layers`, :class:`MLP`, :class:`TwoLayerNet`,
:mod:`handgrad.gradcheck`), the one training loop (:mod:`handgrad.training`), and a
scikit-learn drop-in :class:`MLPClassifier`.
"""

import importlib
from typing import Any

__all__ = [
    "MLP",
    "MLPClassifier",
    "TwoLayerNet",
    "check_gradients",
    "numerical_gradient",
    "rel_error",
]

#: Where each public name lives: imported on first use, so that ``import handgrad.cli``
#: (``handgrad --help``) loads neither SciPy nor scikit-learn, and a script that trains
#: ``MLP`` directly does not pay for scikit-learn.
_HOMES = {
    "MLP": "handgrad.network",
    "MLPClassifier": "handgrad.estimator",
    "TwoLayerNet": "handgrad.twolayer",
    "check_gradients": "handgrad.gradcheck",
    "numerical_gradient": "handgrad.gradcheck",
    "rel_error": "handgrad.gradcheck",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'handgrad' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
