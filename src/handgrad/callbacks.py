"""Callbacks for :func:`handgrad.training.fit`: a progress bar and checkpoints.

A checkpoint holds everything that changes while training (:class:`handgrad.training.Run`):
the weights, the optimizer's state arrays and scalars, the shuffling generator's state,
the history (which carries the epoch count) and the best weights so far. Restoring one
with :func:`load_run` and handing the run back to ``fit`` continues training exactly as
if it had never stopped: the final weights are bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import handgrad.optim as optim
from handgrad.errors import ModelFileError
from handgrad.io import load_checkpoint, model_class, save_checkpoint
from handgrad.network import MLP
from handgrad.training import Callback, History, Run

__all__ = [
    "Checkpoint",
    "ProgressBar",
    "load_run",
    "run_from_state",
    "run_state",
    "save_run",
]

_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


# ------------------------------------------------------------------------ progress
class ProgressBar(Callback):
    """A tqdm bar with one tick per epoch, showing the loss and the validation accuracy.

    total: the number of epochs expected (the bar's length); initial: epochs already done
    (when resuming). Writes to stderr; ``disable=True`` shows nothing.
    """

    def __init__(
        self, total: int | None, *, initial: int = 0, disable: bool = False, desc: str = "training"
    ) -> None:
        self.total, self.initial, self.disable, self.desc = total, initial, disable, desc
        self._bar: Any = None

    def on_train_begin(self, run: Run) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=self.total,
            initial=self.initial,
            unit="epoch",
            desc=self.desc,
            disable=self.disable,
            dynamic_ncols=True,
        )

    def on_epoch_end(self, run: Run) -> bool | None:
        if self._bar is not None:
            hist = run.history
            post = {"loss": f"{hist.loss[-1]:.4f}"}
            if hist.val_score:
                post["val_acc"] = f"{hist.val_score[-1]:.4f}"
            self._bar.set_postfix(post, refresh=False)
            self._bar.update(1)
        return None

    def on_train_end(self, run: Run) -> None:
        self.close()

    def close(self) -> None:
        """Close the bar (also safe after an error or when never opened)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# --------------------------------------------------------------------- checkpoints
class Checkpoint(Callback):
    """Every ``every`` epochs, write the whole run to ``path`` atomically.

    ``metadata`` (JSON) is stored alongside, e.g. the configuration needed to rebuild
    the data. A crash at any moment leaves the previous checkpoint intact.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        every: int = 1,
        metadata: Mapping[str, Any] | None = None,
        on_save: Callable[[Path, Run], None] | None = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"checkpoint interval must be a positive integer, got {every!r}")
        self.path, self.every = Path(path), every
        self.metadata = dict(metadata or {})
        self.on_save = on_save

    def on_epoch_end(self, run: Run) -> bool | None:
        if run.history.epochs % self.every == 0:
            save_run(self.path, run, self.metadata)
            if self.on_save is not None:
                self.on_save(self.path, run)
        return None


def run_state(
    run: Run, *, step_losses: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Everything of ``run`` but the model, as ``(tensors, JSON metadata)``.

    Tensors: the optimizer's state arrays (``optim.<name>``) and the best weights so far
    (``best.<param>``); metadata: the optimizer and its schedule, its scalar state, the
    shuffling generator's state and the history (without the loss of every step unless
    ``step_losses``). :func:`run_from_state` is the inverse.
    """
    opt_arrays, opt_scalars = run.optimizer.state()
    tensors = {f"optim.{k}": v for k, v in opt_arrays.items()}
    if run.best_params is not None:
        tensors |= {f"best.{k}": v for k, v in run.best_params.items()}
    history = run.history.to_dict()
    if not step_losses:
        del history["step_loss"]
    meta = {
        "optimizer": _optimizer_spec(run.optimizer),
        "optimizer_state": opt_scalars,
        "rng": run.rng.bit_generator.state,
        "history": history,
    }
    return tensors, meta


def run_from_state(model: MLP, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Run:
    """The :class:`Run` of ``model`` that :func:`run_state` described.

    Raises ModelFileError when a state array or the best weights do not fit the model.
    """

    def part(prefix: str) -> dict[str, np.ndarray]:
        arrays = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        for name, value in arrays.items():
            want = model.params.get(name.rsplit(".", 1)[-1])
            if want is None or value.shape != want.shape or value.dtype != want.dtype:
                raise ModelFileError(
                    f"state tensor {prefix}{name} {value.shape} {value.dtype} fits none of "
                    f"the model's parameters"
                )
            if not np.isfinite(value).all():
                raise ModelFileError(f"state tensor {prefix}{name} holds non-finite values")
        return arrays

    optimizer = _optimizer_from_spec(meta["optimizer"])
    optimizer.load_state(part("optim."), meta["optimizer_state"])
    best = part("best.") or None
    if best is not None and set(best) != set(model.params):
        raise ModelFileError("the best weights saved do not match the model's parameters")
    history = History.from_dict(meta["history"])
    return Run(model, optimizer, _generator(meta["rng"]), history, best)


def save_run(
    path: str | os.PathLike[str], run: Run, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``run`` (weights, optimizer, RNG, history, best weights) as a checkpoint."""
    model_tensors, model_meta = run.model._get_state()
    tensors, meta = run_state(run)
    tensors |= {f"param.{k}": v for k, v in model_tensors.items()}
    meta |= {
        "model": {"kind": run.model.kind, **model_meta},
        "epoch": run.history.epochs,
        "extra": dict(metadata or {}),
    }
    return save_checkpoint(path, tensors, meta)


def load_run(path: str | os.PathLike[str]) -> tuple[Run, dict[str, Any]]:
    """Rebuild the :class:`Run` a checkpoint holds, and the caller's metadata.

    Raises ModelFileError when the file is corrupt or its contents do not fit together.
    """
    tensors, meta = load_checkpoint(path)
    try:
        return _rebuild(tensors, meta), dict(meta.get("extra") or {})
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(
            f"{path}: cannot rebuild the training run from the checkpoint: {exc}"
        ) from exc


def _rebuild(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> Run:
    model_meta = dict(meta["model"])
    model_cls = model_class(model_meta.pop("kind"))
    if not issubclass(model_cls, MLP):
        raise ModelFileError(f"checkpoint holds a {model_cls.__name__}, not a network")
    params = {k[6:]: v for k, v in tensors.items() if k.startswith("param.")}
    run = run_from_state(model_cls._from_state(params, model_meta), tensors, meta)
    if run.history.epochs != meta["epoch"]:
        raise ModelFileError("checkpoint's epoch disagrees with its history")
    return run


def _generator(state: dict[str, Any]) -> np.random.Generator:
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise ModelFileError(f"checkpoint names an unknown random generator {name!r}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _optimizer_spec(opt: optim.Optimizer) -> dict[str, Any]:
    """The optimizer's class and constructor arguments as JSON, its schedule included."""
    fields = {f.name: getattr(opt, f.name) for f in dataclasses.fields(opt) if f.init}
    schedule = fields.pop("schedule")
    schedule_fields = (
        {f.name: getattr(schedule, f.name) for f in dataclasses.fields(schedule) if f.init}
        if dataclasses.is_dataclass(schedule)
        else {}
    )
    return {
        "name": opt.name,
        "fields": fields,
        "schedule": {"name": schedule.name, "fields": schedule_fields},
    }


def _optimizer_from_spec(spec: Mapping[str, Any]) -> optim.Optimizer:
    opt_cls = optim.OPTIMIZERS.get(spec["name"])
    schedule_cls = optim.SCHEDULES.get(spec["schedule"]["name"])
    if opt_cls is None or schedule_cls is None:
        raise ModelFileError("checkpoint names an unknown optimizer or schedule")
    schedule = schedule_cls(**spec["schedule"]["fields"])
    return opt_cls(**spec["fields"], schedule=schedule)
