"""Each job's Optuna study, in the service's own database.

A job's study is named :func:`study_name` of its id and created idempotently (a retried
submission finds the study already there). Optuna's storage keeps its own tables and stamps
the default ``alembic_version`` table; ours uses ``acprop_tuner_alembic_version``. The storage
is built lazily (Optuna creates its tables on first use) with the same short timeouts as our
engine, so an unreachable database fails fast and the API answers 503.
"""

from __future__ import annotations

import contextlib
import threading
import uuid

import optuna
from optuna.storages import RDBStorage

from service.db.engine import engine_kwargs
from service.settings import Settings

STUDY_PREFIX = "acprop-job-"


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

    def ensure(self, name: str) -> int:
        """Create the study if it does not exist; return its Optuna study id."""
        study = optuna.create_study(
            storage=self.storage(), study_name=name, direction="minimize", load_if_exists=True
        )
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
