"""A small typed Python client of the acprop-tuner user API (``/api/v1/jobs``, ``/datasets``).

Owns the client side of the REST contract: jobs (submit, read, cancel, delete, wait) and data
sets (upload, list, delete: ``_datasets.py``). It needs only httpx and the standard library
(never ``service``, ``optimizer`` or JAX), so a notebook or a script can use it alone.

Example::

    from acprop_tuner.client import TunerClient

    with TunerClient("http://127.0.0.1:8000") as tuner:  # key from ACPROP_TUNER_TOKEN
        job = tuner.submit("mlp-digits", budget={"n_trials": 48})
        tuner.wait(job.id, on_progress=lambda j: print(j.status, j.progress.finished))
        rec = tuner.recommendation(job.id)
        print(rec.optax if rec else "no recommendation")

Retries: calls safe to repeat (every GET, ``cancel``, ``delete``, an upload (content
addressed), and ``submit``, whose ``Idempotency-Key`` makes a repeat return the first job)
are retried with exponential backoff on 429, 503 and connection errors, honouring
``Retry-After``; a quota refusal and a wait over ``max_retry_wait_s`` are raised at once.
The API key is sent per request by an auth object whose repr hides it: it never appears in
this module's reprs, log lines or exceptions.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import httpx

from acprop_tuner.client._datasets import Dataset, DatasetCalls
from acprop_tuner.client._errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    TunerError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from acprop_tuner.client._models import (
    BaselineResult,
    Budget,
    Evidence,
    ExpectedLoss,
    Freshness,
    Job,
    JobBaseline,
    Progress,
    Recommendation,
    Report,
    Trial,
)
from acprop_tuner.client._requests import job_path as _job_path
from acprop_tuner.client._requests import submission
from acprop_tuner.client._transport import Transport

__all__ = [
    "TOKEN_ENV",
    "BaselineResult",
    "Budget",
    "Conflict",
    "Dataset",
    "Evidence",
    "ExpectedLoss",
    "Forbidden",
    "Freshness",
    "InvalidRequest",
    "Job",
    "JobBaseline",
    "NotFound",
    "Progress",
    "RateLimited",
    "Recommendation",
    "Report",
    "Trial",
    "TunerClient",
    "TunerError",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
]

TOKEN_ENV = "ACPROP_TUNER_TOKEN"

Sampler = Literal["tpe", "random", "gp", "cmaes", "qmc"]
Pruner = Literal["none", "median", "successive-halving", "hyperband"]
JobId = str | uuid.UUID


class TunerClient(DatasetCalls):
    """A synchronous client of one acprop-tuner server (data set calls: ``DatasetCalls``).

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000`` (without ``/api/v1``).
        token: a user (or admin) API key; default ``$ACPROP_TUNER_TOKEN`` (none: Unauthorized).
        timeout: seconds for each HTTP request (connect, read, write).
        max_retries: retries of a call that is safe to repeat (0: none).
        max_retry_wait_s: the longest single wait before a retry; a server asking for more
            (a ``Retry-After`` above it) gets its error raised instead.
        transport: an httpx transport (tests; a custom proxy or TLS setup).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 4,
        max_retry_wait_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, not {base_url!r}")
        # Accept the API's own root too (a URL copied from /docs): the paths add /api/v1.
        self.base_url = base_url.rstrip("/").removesuffix("/api/v1")
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        self._transport = Transport(
            self.base_url,
            token,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait_s=max_retry_wait_s,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"TunerClient({self.base_url!r})"

    def __enter__(self) -> TunerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._transport.close()

    # -- jobs ------------------------------------------------------------------------------

    def submit(
        self,
        task: str,
        *,
        options: Mapping[str, Any] | None = None,
        space: Mapping[str, Mapping[str, Any]] | None = None,
        budget: Mapping[str, int] | None = None,
        sampler: Sampler = "tpe",
        pruner: Pruner = "none",
        name: str | None = None,
        warm_start: bool = True,
        seed: int | None = None,
        baselines: Sequence[Mapping[str, Any]] | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit a tuning job; what is left out takes the service's ACProp defaults.

        Args:
            task: a built-in task (``mlp-digits``), ``package.module:factory`` or an entry point.
            options: the task's options, e.g. ``{"batch_size": 128}``.
            space: per hyperparameter ``{"value": v}`` or ``{"low", "high", "log"}``.
            budget: any of ``n_trials``, ``steps``, ``seeds``, ``report_every``, ``max_attempts``.
            seed: the sampler's seed (default: derived from the job id), for a reproducible job.
            baselines: reference optimizers trained beside the job on its seeds, e.g.
                ``[{"optimizer": "prodigy"}]``; None: Adam 1e-3 and Prodigy; ``[]``: none.
            idempotency_key: a key that makes the submission safe to repeat (a repeat returns
                the first job); default a fresh one per call, which covers this call's own
                retries. Pass your own to make a resubmission after a crash safe too.

        Raises:
            InvalidRequest: 422, with ``fields`` naming what was wrong.
            RateLimited: the rate limit or a tenant quota (``error == "quota_exceeded"``).
            Conflict: ``idempotency_key`` was already used for a different job.
        """
        body = submission(
            task, options, space, budget, sampler, pruner, name, warm_start, seed, baselines
        )
        key = idempotency_key or str(uuid.uuid4())
        data = self._transport.json("POST", "/jobs", json=body, headers={"Idempotency-Key": key})
        return Job.from_json(data)

    def job(self, job_id: JobId) -> Job:
        """One job: its status, progress per trial state and best value so far."""
        return Job.from_json(self._transport.json("GET", _job_path(job_id)))

    def jobs(self, status: str | None = None, *, page_size: int = 50) -> Iterator[Job]:
        """The caller's jobs, newest first (optionally only one status), fetched page by page."""
        seen: set[str] = set()
        offset = 0
        while True:
            params: dict[str, Any] = {"limit": page_size, "offset": offset}
            if status is not None:
                params["status"] = status
            page = self._transport.json("GET", "/jobs", params=params)
            for item in page["jobs"]:
                job = Job.from_json(item)
                # A job submitted meanwhile shifts the pages by one: skip the repeat.
                if job.id not in seen:
                    seen.add(job.id)
                    yield job
            offset += len(page["jobs"])
            if not page["jobs"] or offset >= page["total"]:
                return

    def trials(
        self, job_id: JobId, after: int | None = None, *, page_size: int = 1000
    ) -> list[Trial]:
        """The job's trials numbered above ``after`` (all of them by default), in order.

        Trials are numbered as they are created, so polling with the last number seen
        returns only new trials (not later changes of trials already returned).
        """
        trials: list[Trial] = []
        cursor = -1 if after is None else after
        while True:
            page = self._transport.json(
                "GET", f"{_job_path(job_id)}/trials", params={"after": cursor, "limit": page_size}
            )
            trials.extend(Trial.from_json(t) for t in page["trials"])
            if page.get("next_after") is None:
                return trials
            cursor = page["next_after"]

    def cancel(self, job_id: JobId) -> Job:
        """Cancel a queued or running job (cancelling a cancelled job changes nothing).

        Raises:
            Conflict: the job has already finished or failed.
        """
        return Job.from_json(self._transport.json("POST", f"{_job_path(job_id)}/cancel"))

    def delete(self, job_id: JobId) -> None:
        """Delete a job with its trials and its Optuna study."""
        self._transport.request("DELETE", _job_path(job_id), gone_after_retry_ok=True)

    def recommendation(self, job_id: JobId, *, missing_ok: bool = True) -> Recommendation | None:
        """The job's recommended ACProp configuration, or None while there is none yet.

        Args:
            missing_ok: False raises the service's :class:`Conflict` instead of returning
                None; its ``detail`` says why there is none (e.g. too few finished trials).
        """
        try:
            data = self._transport.json("GET", f"{_job_path(job_id)}/recommendation")
        except Conflict:
            if missing_ok:
                return None
            raise
        return Recommendation.from_json(data)

    def wait(
        self,
        job_id: JobId,
        *,
        timeout: float | None = None,
        poll_s: float = 2.0,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job ends (finished, cancelled or failed) and return it.

        Args:
            timeout: seconds to wait at most (None: no limit).
            poll_s: seconds between polls.
            on_progress: called with the job on the first poll and whenever its status or
                progress changed.

        Raises:
            WaitTimeout: the job had not ended within ``timeout`` (it goes on running).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[str, Progress] | None = None
        while True:
            job = self.job(job_id)
            if on_progress is not None and (job.status, job.progress) != last:
                on_progress(job)
            last = (job.status, job.progress)
            if job.done:
                return job
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                p = job.progress
                raise WaitTimeout(
                    None,
                    "timeout",
                    f"job {job.id} is still {job.status} after {timeout:g} s "
                    f"({p.finished} of {p.n_trials} trials finished)",
                )
            time.sleep(poll_s if remaining is None else min(poll_s, remaining))
