"""Continual learning: task streams (what the model sees, task after task), the loop that
learns them one after another (:func:`run_stream`, filling a :class:`ContinualResult`'s
accuracy matrix), and the metrics read from that matrix (:mod:`nmnp.continual.metrics`).

Every stream is task-incremental (task identity given at train and test time); see
:mod:`nmnp.continual.streams`.
"""

from . import metrics
from .runner import ContinualResult, run_stream
from .streams import (
    BENCHMARKS,
    TASK_INCREMENTAL,
    PermutedStream,
    RotatedStream,
    SplitStream,
    Task,
    TaskStream,
    make_stream,
)

__all__ = [
    "BENCHMARKS",
    "ContinualResult",
    "TASK_INCREMENTAL",
    "PermutedStream",
    "RotatedStream",
    "SplitStream",
    "Task",
    "TaskStream",
    "make_stream",
    "metrics",
    "run_stream",
]
