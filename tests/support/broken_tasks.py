"""A task that builds but cannot be trained: its `batch` branches in Python on the traced step
(the mistake docs/tasks.md warns about), so tracing the population's program raises JAX's
TracerBoolConversionError. Used by tests/e2e/test_task_trust.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optimizer.tasks.examples.quadratic import Quadratic, make_quadratic


@dataclass(frozen=True, eq=False)
class BranchesOnTheStep(Quadratic):
    def batch(self, key: Any, step: Any) -> Any:
        if step > 3:  # a Python branch on a traced value: fails when the program is traced
            return super().batch(key, step)
        return super().batch(key, step + 1)


def make_branching(dim: int = 4) -> BranchesOnTheStep:
    base = make_quadratic(dim=dim)
    return BranchesOnTheStep(meta=base.meta, x=base.x, y=base.y, batch_size=base.batch_size)
