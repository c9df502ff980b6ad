"""``acprop-tuner jobs ...``: submit, list, show, cancel and follow jobs on a server.

The handlers of the user-facing commands, built on :mod:`acprop_tuner.client` (so they need
no database and no JAX). Output is for people by default and the server's JSON with
``--json``; the id of a submitted job is printed alone on stdout so that scripts can take it
(``JOB=$(acprop-tuner jobs submit ...)``), and progress goes to stderr. The user key comes
from ``ACPROP_TUNER_TOKEN`` (or ``--token``) and is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from acprop_tuner.cli.terminal import safe, safe_lines
from acprop_tuner.client import (
    TOKEN_ENV,
    Conflict,
    Job,
    Trial,
    TunerClient,
    TunerError,
    Unauthorized,
)

SERVER_ENV = "ACPROP_TUNER_SERVER"


def fail(message: str, code: int = 1) -> int:
    print(f"acprop-tuner: {safe(message)}", file=sys.stderr)
    return code


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def client_from_args(args: argparse.Namespace) -> TunerClient | str:
    """A client from the arguments and environment, or the message saying what is missing."""
    server = args.server or os.environ.get(SERVER_ENV)
    if not server:
        return f"a server is needed: pass --server URL (or set {SERVER_ENV})"
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        return f"a user key is needed: set {TOKEN_ENV} (or pass --token)"
    try:
        return TunerClient(server, token=token)
    except ValueError as exc:
        return str(exc)


def _json_arg(flag: str, raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object")
    return value


def progress_line(job: Job) -> str:
    """One line of a job's progress, e.g. ``running  12/48 trials (3 running, 2 diverged)``."""
    p = job.progress
    parts = [f"{p.running} running"] + [
        f"{n} {state}" for state, n in (("diverged", p.diverged), ("pruned", p.pruned)) if n
    ]
    if p.failed:
        parts.append(f"{p.failed} failed")
    best = f"  best {job.best_value:.4g}" if job.best_value is not None else ""
    return safe(f"{job.status:<9} {p.finished}/{p.n_trials} trials ({', '.join(parts)}){best}")


def _progress_printer() -> Callable[[Job], None]:
    # On a terminal the line is rewritten in place; in a log each change is its own line.
    live = sys.stderr.isatty()

    def show(job: Job) -> None:
        line = progress_line(job)
        if live:
            end = "\n" if job.done else ""
            print(f"\r\033[K{line}", end=end, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    return show


def _submit(client: TunerClient, args: argparse.Namespace) -> int:
    try:
        options = _json_arg("--options", args.options)
        space = _json_arg("--space", args.space)
        baselines = None if args.baselines is None else json.loads(args.baselines)
        if baselines is not None and not isinstance(baselines, list):
            raise ValueError("--baselines must be a JSON list")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return fail(f"bad JSON argument: {exc}", 2)
    budget = {
        k: v
        for k, v in (("n_trials", args.trials), ("steps", args.steps), ("seeds", args.seeds))
        if v is not None
    }
    job = client.submit(
        args.task,
        options=options,
        space=space,
        budget=budget or None,
        sampler=args.sampler,
        pruner=args.pruner,
        name=args.name,
        warm_start=not args.no_warm_start,
        baselines=baselines,
    )
    if not args.wait:
        if args.json:
            print_json(job.raw)
        else:
            print(job.id)
        return 0
    if not args.json:
        print(job.id, flush=True)
    try:
        job = client.wait(
            job.id, timeout=args.timeout, poll_s=args.poll, on_progress=_progress_printer()
        )
    except KeyboardInterrupt:
        return fail(f"stopped waiting; the job goes on: {job.id}", 130)
    rec, why = None, ""
    if job.status == "finished":
        try:
            rec = client.recommendation(job.id, missing_ok=False)
        except Conflict as exc:  # its detail says why there is none
            why = f": {exc.detail}"
    if args.json:
        print_json({"job": job.raw, "recommendation": rec.raw if rec else None})
    elif rec is not None:
        from optimizer.recommendation.text import describe  # jax-free text formatting

        print(safe_lines(describe(rec.raw)))
    if job.status != "finished":
        return fail(f"job {job.id} {job.status}" + (f": {job.error}" if job.error else ""))
    return 0 if rec is not None else fail(f"job {job.id} finished without a recommendation{why}")


def _show(job: Job) -> None:
    b = job.budget
    rows = [
        ("id", job.id),
        ("name", job.name),
        ("status", job.status + (f" ({job.error})" if job.error else "")),
        ("task", job.task + (f" {json.dumps(dict(job.task_options))}" if job.task_options else "")),
        ("budget", f"{b.n_trials} trials x {b.steps} steps x {b.seeds} seeds"),
        ("sampler", f"{job.sampler}, pruner {job.pruner}, warm start {job.warm_start}"),
        ("progress", progress_line(job)),
        ("created", job.created_at.isoformat()),
    ]
    for name, entry in job.space.items():
        shown = (
            f"{entry['value']:g} (fixed)"
            if "value" in entry
            else f"[{entry['low']:g}, {entry['high']:g}]{' log' if entry.get('log') else ''}"
        )
        rows.append((f"  {name}", shown))
    if job.baselines:
        rows.append(("baselines", ", ".join(f"{b.label} ({b.state})" for b in job.baselines)))
    for label, value in rows:
        print(f"{label:<16}{safe(value)}")


def _trial_row(t: Trial) -> str:
    value = f"{t.value:.4g}" if t.value is not None else ""
    diverged = str(t.diverged_at_step) if t.diverged_at_step is not None else ""
    params = " ".join(f"{k}={v:.3g}" for k, v in t.params.items() if v is not None)
    cells = (t.number, t.state, t.attempt, value, diverged, params)
    return "\t".join(safe(c) for c in cells)


def jobs(args: argparse.Namespace) -> int:
    """Dispatch ``jobs submit|list|show|cancel|trials``; returns the exit code."""
    client = client_from_args(args)
    if isinstance(client, str):
        return fail(client, 2)
    try:
        with client:
            command = args.jobs_command
            if command == "submit":
                return _submit(client, args)
            if command == "list":
                listed = list(client.jobs(status=args.status))
                if args.json:
                    print_json([j.raw for j in listed])
                    return 0
                print("id\tname\tstatus\ttask\tfinished\tbest\tcreated_at")
                for j in listed:
                    best = f"{j.best_value:.4g}" if j.best_value is not None else ""
                    cells = (
                        j.id, j.name, j.status, j.task,
                        f"{j.progress.finished}/{j.progress.n_trials}", best,
                        j.created_at.isoformat(),
                    )  # fmt: skip
                    print("\t".join(safe(c) for c in cells))
                return 0
            if command == "trials":
                trials = client.trials(args.job_id, after=args.after)
                if args.json:
                    print_json([t.raw for t in trials])
                    return 0
                print("number\tstate\tattempt\tvalue\tdiverged_at\tparams")
                for t in trials:
                    print(_trial_row(t))
                return 0
            job = client.cancel(args.job_id) if command == "cancel" else client.job(args.job_id)
            if args.json:
                print_json(job.raw)
            elif command == "cancel":
                print(safe(f"job {job.id} is {job.status}"))
            else:
                _show(job)
                # The answer in context: the comparison with the job's baselines, if any yet.
                rec = client.recommendation(job.id) if job.baselines else None
                if rec is not None and rec.comparison:
                    print(f"{'comparison':<16}{safe(rec.comparison)}")
            return 0
    except Unauthorized as exc:
        return fail(f"{exc} (check {TOKEN_ENV})")
    except TunerError as exc:
        return fail(str(exc))
