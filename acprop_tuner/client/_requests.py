"""What the client sends: a job submission's body, as ``POST /jobs`` takes it, and the path of
a job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

__all__ = ["job_path", "submission"]


def job_path(job_id: object) -> str:
    if not str(job_id):
        raise ValueError("a job id is needed")
    # Quoted, so an id read from user input cannot step outside /jobs/ (a bad one gets 404).
    return f"/jobs/{quote(str(job_id), safe='')}"


def submission(
    task: str,
    options: Mapping[str, Any] | None,
    space: Mapping[str, Mapping[str, Any]] | None,
    budget: Mapping[str, int] | None,
    sampler: str,
    pruner: str,
    name: str | None,
    warm_start: bool,
    seed: int | None,
    baselines: Sequence[Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """A job's request body; what is None is left out (the service's default)."""
    body: dict[str, Any] = {"task": {"name": task, "options": dict(options or {})}}
    if name is not None:
        body["name"] = name
    if space is not None:
        body["space"] = {k: dict(v) for k, v in space.items()}
    if budget is not None:
        body["budget"] = dict(budget)
    body.update(sampler=sampler, pruner=pruner, warm_start=warm_start)
    if seed is not None:
        body["seed"] = seed
    if baselines is not None:
        body["baselines"] = [dict(b) for b in baselines]
    return body
