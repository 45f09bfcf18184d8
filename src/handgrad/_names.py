"""The names the command line offers as choices, without importing what they name.

A command's ``--help`` lists its choices (activations, heads, solvers, preprocessing,
tasks); reading them from :mod:`handgrad.layers`, :mod:`handgrad.optim` or
:mod:`handgrad.data` would load SciPy and scikit-learn before anything is shown. The
registries stay the truth: ``tests/test_user_day.py`` holds these names equal to their
keys, in their order.
"""

from __future__ import annotations

#: :data:`handgrad.heads.ACTIVATIONS`'s keys.
ACTIVATIONS = ("relu", "tanh", "logistic", "identity")
#: :data:`handgrad.heads.HEADS`'s keys.
HEADS = ("softmax", "sigmoid", "identity", "poisson")
#: :data:`handgrad.heads.NORMS`'s keys.
NORMS = ("batch", "layer")
#: :data:`handgrad.optim.OPTIMIZERS`'s keys.
SOLVERS = ("sgd", "adam", "lbfgs")
#: :data:`handgrad.data.TASKS`.
TASKS = ("classification", "regression")
#: :data:`handgrad.data.preprocess.KINDS`.
PREPROCESSING = ("none", "scale", "standardize", "mean_image")
