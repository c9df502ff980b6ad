"""Every worker write checked against the lease it names, before anything is stored.

A lease is for one attempt of one trial (or one baseline run) of one job, and the job fixes
what its writes may hold: one loss per seed, reports at the end of each chunk of ``report_every`` steps (or at the
last step), completions with one value per seed and divergence steps within the schedule, and
wall and compile seconds no longer than the lease has existed (a worker starts its clock after
it received the lease and stops it before it sends the result; the dashboard adds these up per
worker). A write that does not fit is a 422 naming the item and what was expected; the call
changes nothing. (Which tokens still hold their trial is fencing's question, asked first: fencing.py.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from service.broker.fencing import HeldLease
from service.broker.writes import ReportIn, ResultIn
from service.errors import InvalidInput

__all__ = ["SECONDS_SLACK", "Schedule", "check_reports", "check_results"]

#: Seconds a reported duration may exceed the lease's age by (clock rounding, a worker's
#: timer started a moment before the server's answer was fully read).
SECONDS_SLACK = 1.0


class Schedule(Protocol):
    """What a result is checked against: a trial's lease, or a baseline run's."""

    @property
    def job_seeds(self) -> int: ...

    @property
    def job_steps(self) -> int: ...

    @property
    def created_at(self) -> datetime: ...


def _per_seed(
    problems: list[dict[str, object]],
    loc: list[str | int],
    values: Sequence[object] | None,
    lease: Schedule,
    *,
    optional: bool,
) -> None:
    if values is None or (optional and len(values) == 0):
        return
    if len(values) != lease.job_seeds:
        problems.append(
            {
                "loc": loc,
                "msg": f"{len(values)} values for a job of {lease.job_seeds} seeds: "
                "send one per seed, in the lease's seed order",
                "type": "value_error",
            }
        )


def _raise(problems: list[dict[str, object]]) -> None:
    if problems:
        raise InvalidInput(problems)


def check_reports(reports: Sequence[ReportIn], leases: Mapping[str, HeldLease]) -> None:
    """Each report's losses are one per seed, at a step the job's schedule reports."""
    problems: list[dict[str, object]] = []
    for i, r in enumerate(reports):
        lease = leases.get(r.token)
        if lease is None:
            continue  # fencing's to answer
        _per_seed(problems, ["body", "reports", i, "losses"], r.losses, lease, optional=False)
        steps, every = lease.job_steps, lease.job_report_every
        if not (1 <= r.step <= steps and (r.step % every == 0 or r.step == steps)):
            problems.append(
                {
                    "loc": ["body", "reports", i, "step"],
                    "msg": f"step {r.step} is not a report step of this job: reports come "
                    f"every {every} steps up to {steps} (and at step {steps})",
                    "type": "value_error",
                }
            )
    _raise(problems)


def check_results(
    results: Sequence[ResultIn], leases: Mapping[str, Schedule], now: datetime
) -> None:
    """Each result (of a trial or a baseline run) has one value per seed, divergence steps
    within the job's steps, and wall and compile seconds within the time since its lease was
    granted."""
    problems: list[dict[str, object]] = []
    for i, r in enumerate(results):
        lease = leases.get(r.token)
        if lease is None:
            continue
        loc: list[str | int] = ["body", "results", i]
        _per_seed(problems, [*loc, "final_losses"], r.final_losses, lease, optional=False)
        for name in ("validation_losses", "last_finite_losses", "diverged_at_step"):
            _per_seed(problems, [*loc, name], getattr(r, name), lease, optional=True)
        late = [s for s in r.diverged_at_step or () if s is not None and s > lease.job_steps]
        if late:
            problems.append(
                {
                    "loc": [*loc, "diverged_at_step"],
                    "msg": f"a divergence step of {late[0]} in a job of {lease.job_steps} steps",
                    "type": "value_error",
                }
            )
        held_s = (now - lease.created_at).total_seconds()
        for name in ("wall_s", "compile_s"):
            seconds = getattr(r, name)
            if seconds is not None and seconds > held_s + SECONDS_SLACK:
                problems.append(
                    {
                        "loc": [*loc, name],
                        "msg": f"{seconds:.6g} s for a lease granted {max(held_s, 0.0):.3f} s ago",
                        "type": "value_error",
                    }
                )
    _raise(problems)
