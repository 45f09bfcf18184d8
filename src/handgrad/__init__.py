"""handgrad: neural-network classifiers and regressors whose every gradient is derived by hand.

The core (:mod:`handgrad.layers`, :class:`MLP`, :class:`TwoLayerNet`,
:mod:`handgrad.gradcheck`), the one training loop (:mod:`handgrad.training`), and a
scikit-learn drop-in :class:`MLPClassifier` and :class:`MLPRegressor`.
"""

from typing import Any

__all__ = [
    "MLP",
    "MLPClassifier",
    "MLPRegressor",
    "TwoLayerNet",
    "__version__",
    "check_gradients",
    "numerical_gradient",
    "rel_error",
    "threads",
]


def __getattr__(name: str) -> Any:
    """Every public name is imported on first use, so that ``import handgrad.cli``
    (``handgrad --help``) loads neither SciPy nor scikit-learn, and a script that trains
    ``MLP`` directly does not pay for scikit-learn."""
    if name == "__version__":
        from handgrad._version import handgrad_version

        return handgrad_version()
    if name == "MLP":
        from handgrad.network import MLP

        return MLP
    if name == "TwoLayerNet":
        from handgrad.twolayer import TwoLayerNet

        return TwoLayerNet
    if name in ("MLPClassifier", "MLPRegressor"):
        import handgrad.estimator as estimator

        return getattr(estimator, name)
    if name == "threads":
        from handgrad._threads import threads

        return threads
    if name in ("check_gradients", "numerical_gradient", "rel_error"):
        import handgrad.gradcheck as gradcheck

        return getattr(gradcheck, name)
    raise AttributeError(f"module 'handgrad' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
