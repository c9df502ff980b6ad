"""The worker's view of the population trainer: one leased batch as one population run.

Owns the translation between leases and `optimizer.population.PopulationTrainer`: grouping a
lease answer into populations (trials of one job share task, seeds and schedule), keeping one
trainer per (task, options, K, S, chunk) for the worker's life so each program compiles once,
padding the seed axis to the worker's compiled S (extra seeds are frozen and never reported),
and turning the trainer's arrays into per-trial, per-seed Python lists for the protocol. The
trainer itself pads a short batch to K with frozen copies of the last configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.tasks.trust import TaskTrust
from worker.datasets import DatasetCache, DatasetUnavailable
from worker.protocol import Lease, TaskSpec


def lanes_of(leases: Sequence[Lease]) -> list[list[Lease]]:
    """Leases grouped into populations: same job, task, seeds, steps and report interval."""
    groups: dict[tuple[Any, ...], list[Lease]] = {}
    for lease in leases:
        t = lease.trial
        key = (t.job_id, t.task.cache_key(), t.seeds, t.steps, t.report_every)
        groups.setdefault(key, []).append(lease)
    return list(groups.values())


@dataclass(frozen=True)
class ChunkOutcome:
    """After a chunk: the step reached, per trial the loss to report per seed, and whether
    every seed of the trial has diverged (nothing more to learn from it)."""

    step: int
    losses: list[list[float]]
    all_diverged: list[bool]


@dataclass(frozen=True)
class FinalOutcome:
    """Per trial, per seed: what `complete` sends."""

    final_losses: list[list[float]]
    validation_losses: list[list[float]]
    last_finite_losses: list[list[float]]
    diverged_at_step: list[list[int | None]]


def _rows(array: Any, n: int, s: int) -> list[list[float]]:
    values = np.asarray(array, dtype=np.float64)[:n, :s]
    return [[float(x) for x in row] for row in values]


class PopulationRun:
    """One population being trained: `advance` a chunk, `freeze` trials, `finish`."""

    def __init__(self, trainer: Any, pop: Any, n_trials: int, n_seeds: int, compile_s: float):
        self._trainer = trainer
        self._pop = pop
        self._n = n_trials
        self._s = n_seeds  # the job's seeds; the trainer may carry more (padding)
        self.compile_s = compile_s

    @property
    def done(self) -> bool:
        return bool(self._pop.done)

    def advance(self) -> ChunkOutcome:
        before = self._trainer.compile_s
        chunk = self._trainer.advance(self._pop)
        # The first chunk of a new shape compiles (or loads from the persistent cache).
        self.compile_s += self._trainer.compile_s - before
        diverged = np.asarray(chunk.diverged_at)[: self._n, : self._s] >= 0
        return ChunkOutcome(
            step=int(chunk.step),
            losses=_rows(chunk.loss, self._n, self._s),
            all_diverged=[bool(row.all()) for row in diverged],
        )

    def freeze(self, trials: Sequence[int]) -> None:
        if not trials:
            return
        mask = np.zeros((self._n, self._trainer.n_seeds), bool)
        mask[list(trials)] = True
        self._trainer.freeze(self._pop, mask)

    def finish(self) -> FinalOutcome:
        before = self._trainer.compile_s
        final = self._trainer.finish(self._pop)
        self.compile_s += self._trainer.compile_s - before
        n, s = self._n, self._s
        diverged = np.asarray(final.diverged_at)[:n, :s]
        return FinalOutcome(
            final_losses=_rows(final.final_loss, n, s),
            validation_losses=_rows(final.validation_loss, n, s),
            last_finite_losses=_rows(final.last_finite_loss, n, s),
            diverged_at_step=[[int(d) if d >= 0 else None for d in row] for row in diverged],
        )


def _pad_seeds(seeds: Sequence[int], n_seeds: int) -> list[int]:
    """The job's seeds, then distinct filler seeds up to the compiled S (their lanes are frozen
    at once and never reported; distinct so no two lanes are accidentally identical work)."""
    padded = list(seeds)
    filler = (max(padded) + 1) if padded else 0
    while len(padded) < n_seeds:
        padded.append(filler % 2**31)
        filler += 1
    return padded


class PopulationPool:
    """One trainer per (task, options, K, S, chunk), kept for the worker's life.

    The trainer's compiled programs live in the optimizer's process-wide program cache; the
    pool keeps the loaded task too (building a task loads its data set: a user's is fetched
    by hash through ``datasets`` once per process, and from its disk cache after that)."""

    def __init__(
        self, trust: TaskTrust | None = None, datasets: DatasetCache | None = None
    ) -> None:
        # What this worker's operator allowed; a name outside it is refused before import.
        self._trust = trust or TaskTrust()
        # Where tasks on a user's data set get its arrays (fetched once, then from disk).
        self._datasets = datasets
        self._tasks: dict[tuple[str, str], Any] = {}
        self._trainers: dict[tuple[Any, ...], Any] = {}

    def task(self, spec: TaskSpec) -> Any:
        """The loaded task of ``spec`` (kept; refused before import unless trusted here)."""
        key = spec.cache_key()
        if key not in self._tasks:
            from optimizer.tasks import load_task
            from optimizer.tasks.registry import task_dataset

            options = dict(spec.options)
            dataset = None
            name = task_dataset(spec.name, options)
            if name is not None:
                if self._datasets is None:
                    raise DatasetUnavailable("this worker has no data set cache to fetch into")
                dataset = self._datasets.load(name)
            self._tasks[key] = load_task(spec.name, options, trust=self._trust, dataset=dataset)
        return self._tasks[key]

    def trainer(self, spec: TaskSpec, capacity: int, n_seeds: int, chunk_steps: int) -> Any:
        key = (spec.cache_key(), capacity, n_seeds, chunk_steps)
        if key not in self._trainers:
            from optimizer.population import PopulationTrainer

            self._trainers[key] = PopulationTrainer(
                self.task(spec), n_configs=capacity, n_seeds=n_seeds, chunk_steps=chunk_steps
            )
        return self._trainers[key]

    def start(
        self,
        task: TaskSpec,
        configs: Sequence[Mapping[str, float]],
        *,
        seeds: Sequence[int],
        capacity: int,
        n_seeds: int,
        steps: int,
        chunk_steps: int,
    ) -> PopulationRun:
        from optimizer.config import ACPropConfig

        if len(configs) > capacity:
            raise ValueError(f"{len(configs)} trials leased for a capacity of {capacity}")
        trainer = self.trainer(task, capacity, n_seeds, chunk_steps)
        before = trainer.compile_s
        acprop = [ACPropConfig.from_dict(dict(c)) for c in configs]
        pop = trainer.start(acprop, _pad_seeds(seeds, n_seeds), total_steps=steps)
        run = PopulationRun(
            trainer, pop, len(configs), len(seeds), compile_s=trainer.compile_s - before
        )
        if n_seeds > len(seeds):
            # Padding seeds: frozen from the start, so they cost no updates.
            mask = np.zeros((len(configs), n_seeds), bool)
            mask[:, len(seeds) :] = True
            trainer.freeze(pop, mask)
        return run
