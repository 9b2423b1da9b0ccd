"""Continual learning: task streams (what the model sees, task after task).

Every stream is task-incremental (task identity given at train and test time); see
:mod:`nmnp.continual.streams`.
"""

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
    "TASK_INCREMENTAL",
    "PermutedStream",
    "RotatedStream",
    "SplitStream",
    "Task",
    "TaskStream",
    "make_stream",
]
