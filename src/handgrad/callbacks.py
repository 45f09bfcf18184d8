"""Callbacks for :func:`handgrad.training.fit`: a progress bar and checkpoints.

A checkpoint holds everything that changes while training (:class:`handgrad.training.Run`);
what the file holds, and :func:`handgrad.state.load_run` to restore it, are in
:mod:`handgrad.state`. Handing the restored run back to ``fit`` continues training
exactly as if it had never stopped: the final weights are bit-identical to an
uninterrupted run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from handgrad.heads import HEADS
from handgrad.state import save_run
from handgrad.training import Callback, Run

__all__ = ["Checkpoint", "ProgressBar"]


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
            if hist.val_score:  # the head's score: accuracy, or R² for a regression head
                score = "val_r2" if HEADS[run.model.head].score == "r2" else "val_acc"
                post[score] = f"{hist.val_score[-1]:.4f}"
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
    """Every ``every`` epochs, write the whole run to ``path`` atomically
    (:func:`handgrad.state.save_run`).

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
