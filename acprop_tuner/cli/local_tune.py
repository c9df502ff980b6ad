"""Tune a task on this machine in one call: ``acprop_tuner.tune(...)`` and the engine of
``acprop-tuner tune``.

One run is a service job like any other (warm-start sweep, sampler, leases, workers, the
confirmation stage, the recommendation), on a local stack (``local_stack.py``) started for it
and stopped after it. The job is submitted and followed through the typed client
(``acprop_tuner.client``), so the answer is the client's :class:`Recommendation`.

Stopping early (Ctrl-C in a terminal, "interrupt" in a notebook: a ``KeyboardInterrupt``
either way; or a timeout) cancels the job: the workers finish their chunk and give their
trials back, any lease a killed worker held is ended, and the job is ``cancelled`` with no
trial left running. This module installs no signal handler (a notebook kernel owns its own).
"""

from __future__ import annotations

import contextlib
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acprop_tuner.cli.local_stack import LocalStack, StackOptions
from acprop_tuner.cli.progress import JobProgress
from acprop_tuner.cli.task_ref import TaskProblem, probe, task_ref
from acprop_tuner.client import Conflict, Job, Recommendation, TunerClient, TunerError

__all__ = ["LocalTune", "TuneError", "TuneRequest", "tune"]

DEFAULT_TRIALS = 48
POLL_S = 0.5


class TuneError(RuntimeError):
    """A run that ended without a recommendation; the message says why (``job_id``: its job,
    if it had one; ``acprop-tuner jobs``/the dashboard show more)."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


@dataclass(frozen=True)
class TuneRequest:
    """What to tune and how (see :func:`tune` for each field)."""

    task: str | Callable[..., Any]
    options: Mapping[str, Any] | None = None
    trials: int = DEFAULT_TRIALS
    steps: int | None = None
    seeds: int = 2
    seed: int | None = None
    space: Mapping[str, Mapping[str, Any]] | None = None
    sampler: str = "tpe"
    pruner: str = "none"
    name: str | None = None
    warm_start: bool = True
    device: str = "cpu"
    capacity: int = 16
    data_dir: str | Path | None = None
    timeout_s: float | None = None

    def check(self) -> None:
        for field, value in (("trials", self.trials), ("seeds", self.seeds),
                             ("capacity", self.capacity), ("steps", self.steps)):  # fmt: skip
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise TaskProblem(f"{field} must be an integer >= 1, got {value!r}")
        if self.seed is not None and not (isinstance(self.seed, int) and 0 <= self.seed < 2**32):
            raise TaskProblem(f"seed must be an integer in [0, 2^32), got {self.seed!r}")


class LocalTune:
    """One local run: :meth:`prepare`, :meth:`start`, :meth:`follow`, :meth:`answer`;
    :meth:`cancel` to stop early; :meth:`close` always."""

    def __init__(self, request: TuneRequest, progress: JobProgress) -> None:
        request.check()
        self.request = request
        self.progress = progress
        self.options = dict(request.options or {})
        self.stack: LocalStack | None = None
        self.client: TunerClient | None = None
        self.job_id: str | None = None
        self.steps = request.steps
        self._idempotency_key = str(uuid.uuid4())
        self._submitting = False

    def prepare(self) -> None:
        """Resolve the task, check it builds on the device, and settle the steps."""
        self.ref = task_ref(self.request.task)
        info = probe(self.ref, self.options, device=self.request.device)
        if self.steps is None:
            self.steps = info.default_steps

    def start(self) -> Job:
        """Start the local service and submit the job."""
        r = self.request
        self.stack = LocalStack(
            StackOptions(
                data_dir=Path(r.data_dir) if r.data_dir is not None else None,
                device=r.device,
                capacity=r.capacity,
                allow_module=self.ref.module,
                python_path=self.ref.path,
            )
        )
        self.progress.note(
            f"Local run: database {self.stack.settings.database_url_redacted()}"
            + (f"; task module {self.ref.module} allowed for this run" if self.ref.module else "")
        )
        self.stack.start()
        self.client = TunerClient(self.stack.url, token=self.stack.user_key, max_retries=2)
        self._submitting = True
        job = self.client.submit(
            self.ref.name,
            options=self.options,
            space=r.space,
            budget={"n_trials": r.trials, "steps": int(self.steps or 0), "seeds": r.seeds},
            sampler=r.sampler,  # type: ignore[arg-type]
            pruner=r.pruner,  # type: ignore[arg-type]
            name=r.name,
            warm_start=r.warm_start,
            seed=r.seed,
            idempotency_key=self._idempotency_key,
        )
        self.job_id = job.id
        self.progress.note(
            f"Job {job.id}: {job.budget.n_trials} trials x {job.budget.seeds} seeds x "
            f"{job.budget.steps} steps of {job.task} on {r.device}\n"
            f"Dashboard: {self.stack.url}/dashboard#/jobs/{job.id} "
            f"(user key for this run: {self.stack.user_key})"
        )
        return job

    def follow(self) -> Job:
        """Poll the job until it ends; the progress shows it."""
        assert self.client is not None and self.stack is not None and self.job_id is not None
        deadline = (
            None if self.request.timeout_s is None else time.monotonic() + self.request.timeout_s
        )
        while True:
            job = self.client.job(self.job_id)
            self.progress.update(job)
            if job.done:
                return job
            problem = self.stack.worker_problem()
            if problem is not None:
                raise TuneError(problem, self.job_id)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"job {self.job_id} did not finish within {self.request.timeout_s:g} s; "
                    "it was cancelled"
                )
            time.sleep(POLL_S)

    def answer(self, job: Job) -> Recommendation:
        """The job's recommendation, or :class:`TuneError` saying why there is none."""
        assert self.client is not None
        if job.status != "finished":
            raise TuneError(f"job {job.id} {job.status}: {job.error or 'no reason given'}", job.id)
        try:
            rec = self.client.recommendation(job.id, missing_ok=False)
        except Conflict as exc:
            raise TuneError(f"job {job.id} has no recommendation: {exc}", job.id) from None
        assert rec is not None
        return rec

    def cancel(self) -> None:
        """Cancel the job (if any) and stop the workers; nothing stays running or leased."""
        if self.client is not None and self.job_id is None and self._submitting:
            # Interrupted while submitting: the same key finds the job if it was made.
            with contextlib.suppress(TunerError, OSError):
                self.job_id = self.client.submit(
                    self.ref.name, idempotency_key=self._idempotency_key
                ).id
        if self.client is not None and self.job_id is not None:
            with contextlib.suppress(Conflict):  # it had just ended
                self.client.cancel(self.job_id)
        if self.stack is not None:
            self.stack.stop_workers()
            if self.job_id is not None:
                self.stack.end_leases(self.job_id)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.stack is not None:
            self.stack.close()


def tune(
    task: str | Callable[..., Any],
    *,
    options: Mapping[str, Any] | None = None,
    trials: int = DEFAULT_TRIALS,
    steps: int | None = None,
    seeds: int = 2,
    seed: int | None = None,
    space: Mapping[str, Mapping[str, Any]] | None = None,
    sampler: str = "tpe",
    pruner: str = "none",
    device: str = "cpu",
    capacity: int = 16,
    data_dir: str | Path | None = None,
    timeout: float | None = None,
    progress: bool = True,
    name: str | None = None,
    warm_start: bool = True,
) -> Recommendation:
    """Tune ACProp for ``task`` on this machine and return the recommendation.

    Starts the service locally (the database in the data dir, the API in a thread, a worker
    process), runs one job through it, stops it, and returns the job's
    :class:`acprop_tuner.client.Recommendation` (``.optax``: the line to paste; ``.config``:
    the six hyperparameters; ``.job_id``: the job, kept in the database).

    Args:
        task: a built-in name (``"mlp-digits"``), an installed entry point,
            ``"package.module:factory"``, or the factory function itself. The worker is
            another process: a factory must be importable by its module path (not defined in
            ``__main__``, a notebook cell, nor inside a function).
        options: the task's options (keyword arguments of its factory), plain JSON.
        trials, steps, seeds: the budget; ``steps`` None: the task's ``default_steps``.
        seed: the sampler's seed: the same seed, task and budget give the same trials.
        space: per hyperparameter ``{"value": v}`` or ``{"low", "high", "log"}``.
        device: ``"cpu"`` or ``"gpu:N"`` for the worker (checked before anything starts).
        capacity: trials trained at once by the worker (K).
        data_dir: where the database and logs go (default ``$ACPROP_TUNER_DATA_DIR``, else
            the per-user data dir).
        timeout: seconds before the job is cancelled and :class:`TimeoutError` raised.
        progress: show a progress bar (a notebook's, or the terminal's on stderr).

    Raises:
        TaskProblem: the task, its options or the device cannot be used (nothing started).
        TuneError: the job ended without a recommendation (failed, no usable trial).
        KeyboardInterrupt: interrupted; the job was cancelled first.
    """
    request = TuneRequest(
        task, options, trials, steps, seeds, seed, space, sampler, pruner, name, warm_start,
        device, capacity, data_dir, timeout,
    )  # fmt: skip
    bar = JobProgress(enabled=progress)
    run = LocalTune(request, bar)
    try:
        run.prepare()
        with bar:
            run.start()
            job = run.follow()
        return run.answer(job)
    except BaseException:
        try:
            run.cancel()
        except Exception as exc:  # the original error is the one to raise
            warnings.warn(f"could not cancel the job cleanly: {exc}", stacklevel=2)
        raise
    finally:
        run.close()
