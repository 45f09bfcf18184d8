"""One epoch's steps: what they bring back (:class:`Steps`), and the steps themselves
taken batch by batch (:func:`step_through`), the engines' ``epoch`` unless one takes the
whole epoch in one call (:mod:`~handgrad.training.compiled`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from handgrad.training.sources import Batch, BatchSource


@dataclass
class Steps:
    """The steps of (part of) an epoch, in order: each one's loss (the last not finite
    where the epoch diverged: :attr:`diverged`), and over the finite ones ``total``
    (Σ loss · n), ``correct`` (rows right; on a device, a 0-d array left there) and
    ``seen`` (rows)."""

    losses: list[float] = field(default_factory=list)
    total: float = 0.0
    correct: Any = 0
    seen: int = 0

    @property
    def diverged(self) -> bool:
        """Whether the last step's loss is not finite (the steps ended there)."""
        return bool(self.losses) and not math.isfinite(self.losses[-1])


def step_through(
    step: Callable[..., tuple[float, Any]], source: BatchSource, limit: int | None = None
) -> Steps:
    """``step(*batch)`` on each batch of the epoch of ``source`` (its order set by
    ``begin_epoch``), at most ``limit`` of them, ending after a step whose loss is not
    finite."""
    N, size = source.n_rows, source.batch_size
    steps = Steps()
    for start in range(0, N, size)[:limit]:
        stop = min(start + size, N)
        batch: Batch = source.batch(start, stop)
        loss, right = step(*batch)
        steps.losses.append(loss)
        if not math.isfinite(loss):
            break
        steps.total += loss * (stop - start)
        steps.correct += right  # on a device, summed there: read once, at the epoch's end
        steps.seen += stop - start
    return steps
