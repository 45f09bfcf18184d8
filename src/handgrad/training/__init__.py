"""The one training loop: every model, the estimator and the command line train through it.

:func:`fit` runs epochs of shuffled minibatches (or full-batch L-BFGS), records a
:class:`History`, stops on a loss or validation plateau, restores the best weights
for early stopping, refuses to continue past a non-finite loss or non-finite weights
(keeping the last finished epoch's weights; a ValueError, as scikit-learn's), keeps the
weights when interrupted with Ctrl-C, and calls callbacks once per epoch (progress bars
and checkpoints hang off them).

One idea per module:

- :mod:`~handgrad.training.loop` — the loop: it counts, records and stops;
- :mod:`~handgrad.training.sources` — what a batch is: rows gathered into the fast
  engine's buffers, rows taken (a memory-mapped X's read from its file, a sparse X's
  kept sparse), or rows of an array on another library's device;
- :mod:`~handgrad.training.engines` — what a step is: the fast engine (a
  :class:`~handgrad.workspace.Workspace`; plain SGD fused into its products) or the
  reference (:meth:`MLP.loss_and_gradients <handgrad.network.MLP.loss_and_gradients>`,
  then the optimizer); :mod:`~handgrad.training.lbfgs` drives either full batch;
- :mod:`~handgrad.training.validation` — held-out data that scores itself;
  :mod:`~handgrad.training.scores` — accuracy and R²;
- :mod:`~handgrad.training.data` — the checked training data;
  :mod:`~handgrad.training.memory` — rows per step and the memory check;
- :mod:`~handgrad.training.run` — the run, its history, the callbacks' hooks;
  :mod:`~handgrad.training.config` — :class:`TrainingConfig`;
- :mod:`~handgrad.training.doors` — :func:`fit` (checks its inputs) and :func:`train`
  (checked data), which choose the engine and the source once, outside the loop.

X may also be an array of another array-API library (a PyTorch or CuPy array on a GPU,
an array-api-strict array): training then runs there, on the reference engine, with the
network and the optimizer's state moved once to X's device.
"""

from handgrad.training.config import ENGINES, STOPPING, TrainingConfig
from handgrad.training.data import TrainingData
from handgrad.training.doors import fit, new_run, train
from handgrad.training.engines import Engine, engine_for
from handgrad.training.memory import check_training_memory, memory_needed, step_rows
from handgrad.training.run import Callback, History, Run
from handgrad.training.scores import SCORES, accuracy, r2, right_rows, validation_score
from handgrad.training.sources import Batch, BatchSource, batch_source
from handgrad.training.validation import HeldOut, held_out

__all__ = [
    "ENGINES",
    "SCORES",
    "STOPPING",
    "Batch",
    "BatchSource",
    "Callback",
    "Engine",
    "HeldOut",
    "History",
    "Run",
    "TrainingConfig",
    "TrainingData",
    "accuracy",
    "batch_source",
    "check_training_memory",
    "engine_for",
    "fit",
    "held_out",
    "memory_needed",
    "new_run",
    "r2",
    "right_rows",
    "step_rows",
    "train",
    "validation_score",
]
