"""The `Task` protocol: what the population trainer needs from a training problem.

A task is a loss over parameters and batches, with its data. Everything the trainer calls on
it runs inside one jitted, vmapped program, so each method must be a pure JAX function of its
arguments (data lives in the task object as constant arrays):

- ``init_params(key) -> params``: a parameter pytree from a PRNG key. The same key gives the
  same parameters, so every configuration of a population starts from the same point for a
  given seed (common random numbers).
- ``batch(key, step) -> batch``: the batch of update ``step`` (1-based, a traced int32 scalar)
  derived from the seed's data key, typically ``jax.random.fold_in(key, step)``. Shapes must
  not depend on ``step``.
- ``loss(params, batch) -> scalar``: the training loss to minimise.
- ``validation_loss(params) -> scalar``: the loss on held-out data (or the training objective
  itself, for toy problems without data).
- ``meta``: a :class:`TaskMeta`.

This module does not import JAX: the API process uses `TaskMeta` and the protocol's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Task", "TaskMeta"]


@dataclass(frozen=True)
class TaskMeta:
    """Static facts about a task.

    Attributes:
        name: the task's registered name (built-in name, ``package.module:factory`` or entry
            point name).
        n_params: the number of scalar parameters.
        default_steps: a sensible number of training steps for a tuning trial.
        default_batch_size: the minibatch size (the full data set size for full-batch tasks).
        options: the validated options the task was built with. Together with ``name`` they
            identify the computation, which is how compiled programs are cached.
    """

    name: str
    n_params: int
    default_steps: int
    default_batch_size: int
    options: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    """A training problem: see the module docstring for the contract of each method."""

    meta: TaskMeta

    def init_params(self, key: Any) -> Any: ...

    def loss(self, params: Any, batch: Any) -> Any: ...

    def batch(self, key: Any, step: Any) -> Any: ...

    def validation_loss(self, params: Any) -> Any: ...
