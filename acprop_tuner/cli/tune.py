"""``acprop-tuner tune TASK``: tune a task on this machine in one command.

No server to start by hand: the run starts the service locally, submits one job, shows its
progress and the dashboard's address, prints the recommendation, and stops what it started
(``--serve`` keeps the API and dashboard up until Ctrl-C). The engine is
:mod:`acprop_tuner.cli.local_tune`, shared with ``acprop_tuner.tune``.

Exit codes: 0 a recommendation; 1 the job ended without one (or timed out); 2 a bad argument,
task, option or device (nothing was started); 130 interrupted (Ctrl-C, SIGINT): the job was
cancelled, no trial is left running or leased, the worker and the API stopped.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from acprop_tuner.cli.terminal import safe, safe_lines

__all__ = ["add_parser", "main"]

EXIT_INTERRUPTED = 128 + signal.SIGINT


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from optimizer.tuning.names import PRUNERS, SAMPLERS

    tune = sub.add_parser(
        "tune",
        help="tune a task on this machine in one command (no server to start)",
        description="Run one tuning job locally: the embedded database in the data dir, the "
        "API in this process, a worker process; prints the recommendation.",
    )
    tune.add_argument(
        "task", help="a built-in task, an installed entry point, or package.module:factory"
    )
    tune.add_argument("--options", default=None, help="task options as JSON")
    tune.add_argument("--trials", type=int, default=48, help="trials in the job (48)")
    tune.add_argument(
        "--steps", type=int, default=None, help="steps per trial (default: the task's own)"
    )
    tune.add_argument("--seeds", type=int, default=2, help="seeds per trial (2)")
    tune.add_argument("--seed", type=int, default=None, help="the sampler's seed")
    tune.add_argument("--space", default=None, help="search space as JSON (see jobs submit)")
    tune.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    tune.add_argument("--pruner", choices=PRUNERS, default="none")
    tune.add_argument("--name", default=None, help="a label for the job")
    tune.add_argument("--no-warm-start", action="store_true", help="skip the first sweep")
    tune.add_argument("--device", default="cpu", help="cpu or gpu:N, for the worker")
    tune.add_argument("--capacity", type=int, default=16, help="trials trained at once (16)")
    tune.add_argument(
        "--data-dir", default=None, help="database and logs (default: ACPROP_TUNER_DATA_DIR)"
    )
    tune.add_argument("--timeout", type=float, default=None, help="cancel after seconds")
    tune.add_argument("--json", action="store_true", help="print the recommendation as JSON")
    tune.add_argument(
        "--serve",
        action="store_true",
        help="keep the API and dashboard up after the job, until Ctrl-C",
    )


def _fail(message: str, code: int) -> int:
    print(f"acprop-tuner tune: {safe(message)}", file=sys.stderr)
    return code


def _json_arg(text: str | None, flag: str) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {type(value).__name__}")
    return value


def main(args: argparse.Namespace) -> int:
    from acprop_tuner.cli.local_tune import LocalTune, TuneError, TuneRequest
    from acprop_tuner.cli.progress import JobProgress
    from acprop_tuner.cli.task_ref import TaskProblem
    from acprop_tuner.client import TunerError

    try:
        request = TuneRequest(
            args.task,
            options=_json_arg(args.options, "--options"),
            trials=args.trials, steps=args.steps, seeds=args.seeds, seed=args.seed,
            space=_json_arg(args.space, "--space"), sampler=args.sampler, pruner=args.pruner,
            name=args.name, warm_start=not args.no_warm_start, device=args.device,
            capacity=args.capacity, data_dir=args.data_dir, timeout_s=args.timeout,
        )  # fmt: skip
        bar = JobProgress()
        run = LocalTune(request, bar)
    except (ValueError, TaskProblem) as exc:
        return _fail(str(exc), 2)
    try:
        try:
            run.prepare()
            with bar:
                run.start()
                job = run.follow()
            rec = run.answer(job)
        except KeyboardInterrupt:
            # Clean up without a second Ctrl-C cutting it short (each step is bounded).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            bar.note("Interrupted: cancelling the job, stopping the worker")
            try:
                run.cancel()
            except Exception as exc:  # the exit code still says interrupted
                bar.note(f"Could not cancel cleanly: {type(exc).__name__}: {exc}")
                return EXIT_INTERRUPTED
            bar.note(f"Job {run.job_id} cancelled" if run.job_id else "Nothing was submitted")
            return EXIT_INTERRUPTED
        except TaskProblem as exc:
            return _fail(str(exc), 2)
        except (TuneError, TimeoutError, TunerError) as exc:
            run.cancel()
            return _fail(str(exc), 1)
        if args.json:
            print(json.dumps(rec.raw, indent=2))
        else:
            from optimizer.recommendation.text import describe

            print(safe_lines(describe(rec.raw)))
        assert run.stack is not None
        bar.note(
            f"The same later: acprop-tuner recommend {rec.job_id} "
            f"(database {run.stack.settings.database_url_redacted()})"
        )
        if args.serve:
            run.stack.stop_workers()
            bar.note(
                f"Dashboard: {run.stack.url}/dashboard#/jobs/{rec.job_id} "
                f"(user key: {run.stack.user_key})\nCtrl-C stops the server."
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        run.close()
