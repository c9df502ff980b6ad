"""Each job's Optuna study, in the service's own database.

A job's study is named :func:`study_name` of its id and created idempotently (a retried
submission finds the study already there), with the job's context as the study's user
attributes (:func:`job_context`: job id and name, task, tenant id). Optuna's storage keeps
its own tables and stamps the default ``alembic_version`` table; ours uses
``acprop_tuner_alembic_version``. The storage is built lazily (Optuna creates its tables on
first use) with the same short timeouts as our engine, so an unreachable database fails fast
and the API answers 503.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.storages import RDBStorage

from service.db.engine import engine_kwargs
from service.settings import Settings

STUDY_PREFIX = "acprop-job-"


def job_context(
    job_id: uuid.UUID, job_name: str, task: Mapping[str, Any], tenant_id: uuid.UUID
) -> dict[str, Any]:
    """A job's study's user attributes: which job, which task, whose (plain JSON)."""
    return {
        "acprop_job_id": str(job_id),
        "job_name": job_name,
        "task": task["name"],
        "task_options": dict(task.get("options") or {}),
        "tenant_id": str(tenant_id),
    }


def study_name(job_id: uuid.UUID) -> str:
    return f"{STUDY_PREFIX}{job_id}"


class Studies:
    """Creates and deletes job studies; one shared ``RDBStorage`` per API process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._storage: RDBStorage | None = None
        self._lock = threading.Lock()

    def storage(self) -> RDBStorage:
        with self._lock:
            if self._storage is None:
                optuna.logging.set_verbosity(optuna.logging.WARNING)
                self._storage = RDBStorage(
                    self._settings.database_url_value(),
                    engine_kwargs=engine_kwargs(self._settings),
                )
            return self._storage

    def ensure(self, name: str, user_attrs: Mapping[str, Any] | None = None) -> int:
        """Create the study if it does not exist, with ``user_attrs`` (the job's context, so
        that optuna-dashboard and ``optuna.load_study`` users can tell the studies apart);
        return its Optuna study id."""
        storage = self.storage()
        study = optuna.create_study(
            storage=storage, study_name=name, direction="minimize", load_if_exists=True
        )
        for key, value in (user_attrs or {}).items():
            storage.set_study_user_attr(study._study_id, key, value)
        return study._study_id

    def delete(self, name: str) -> None:
        """Delete the study if it exists."""
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=self.storage())

    def close(self) -> None:
        with self._lock:
            if self._storage is not None:
                self._storage.engine.dispose()
                self._storage = None
