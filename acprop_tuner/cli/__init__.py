"""The `acprop-tuner` command line: one entry point that dispatches to the service, the worker,
the demo and `tune` (one local run). Handlers are imported lazily so that `acprop-tuner serve` never imports JAX and
`acprop-tuner worker` never imports the database layer."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from acprop_tuner import __version__
from optimizer.tuning.names import PRUNERS, SAMPLERS

# subcommand -> "module:function"; each function takes the parsed argparse.Namespace and
# returns a process exit code.
_HANDLERS = {
    "demo": "acprop_tuner.cli.demo:main",
    "tune": "acprop_tuner.cli.tune:main",
    "serve": "acprop_tuner.cli.service_commands:serve",
    "migrate": "acprop_tuner.cli.service_commands:migrate",
    "keys": "acprop_tuner.cli.service_commands:keys",
    "worker": "worker.commands:worker",
    "recommend": "acprop_tuner.cli.service_commands:recommend",
    "jobs": "acprop_tuner.cli.jobs:jobs",
    "datasets": "acprop_tuner.cli.datasets:datasets",
}

_STATUSES = ["queued", "running", "finished", "cancelled", "failed"]


def _client_options() -> argparse.ArgumentParser:
    """The options of every command that talks to a server with a user key."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server", default=None, help="base URL of the API (or ACPROP_TUNER_SERVER)"
    )
    common.add_argument(
        "--token",
        default=None,
        help="user key; prefer the ACPROP_TUNER_TOKEN environment variable: "
        "command-line flags show in the process list (ps)",
    )
    common.add_argument("--json", action="store_true", help="print the server's JSON")
    return common


def _add_datasets_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``datasets upload|list|show|delete``: a user's own data on a server (docs/tasks.md)."""
    common = _client_options()
    datasets = sub.add_parser("datasets", help="upload, list, delete your data sets (user key)")
    datasets_sub = datasets.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    upload = datasets_sub.add_parser(
        "upload", parents=[common], help="upload an .npz (x, y, x_val, y_val); prints its sha256"
    )
    upload.add_argument("file", help="an .npz file, as numpy.savez writes it")
    upload.add_argument("--name", default=None, help="a label for the data set")
    datasets_sub.add_parser("list", parents=[common], help="your data sets, newest first")
    for action, what in (("show", "a data set's arrays and families"), ("delete", "delete one")):
        datasets_sub.add_parser(action, parents=[common], help=what).add_argument("sha256")


def _add_jobs_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``jobs submit|list|show|cancel|trials``: the user's commands against a server."""
    common = _client_options()
    jobs = sub.add_parser("jobs", help="submit, list, show, cancel jobs on a server (user key)")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    submit = jobs_sub.add_parser(
        "submit", parents=[common], help="submit a job; prints its id (--wait: follow it)"
    )
    submit.add_argument("--task", required=True, help="a built-in task or package.module:factory")
    submit.add_argument(
        "--options", default=None, help="task options as JSON, e.g. '{\"batch_size\": 64}'"
    )
    submit.add_argument(
        "--space",
        default=None,
        help='search space as JSON, e.g. \'{"b1": {"value": 0.9}, "learning_rate": '
        '{"low": 1e-4, "high": 0.1, "log": true}}\'',
    )
    submit.add_argument("--trials", type=int, default=None, help="trials in the job")
    submit.add_argument("--steps", type=int, default=None, help="training steps per trial")
    submit.add_argument("--seeds", type=int, default=None, help="seeds per trial")
    submit.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    submit.add_argument("--pruner", choices=PRUNERS, default="none")
    submit.add_argument("--name", default=None, help="a label for the job")
    submit.add_argument(
        "--no-warm-start", action="store_true", help="skip the initial learning-rate sweep"
    )
    submit.add_argument(
        "--baselines",
        default=None,
        help='reference optimizers trained beside the job as JSON, e.g. \'[{"optimizer": '
        '"adam", "learning_rate": 1e-3}]\' (default Adam 1e-3 and Prodigy; [] for none)',
    )
    submit.add_argument(
        "--wait", action="store_true", help="follow the job, then print the recommendation"
    )
    submit.add_argument("--timeout", type=float, default=None, help="with --wait: give up after")
    submit.add_argument("--poll", type=float, default=2.0, help="with --wait: seconds per poll")

    list_ = jobs_sub.add_parser("list", parents=[common], help="your jobs, newest first")
    list_.add_argument("--status", choices=_STATUSES, default=None)
    show = jobs_sub.add_parser("show", parents=[common], help="a job's status and progress")
    show.add_argument("job_id")
    cancel = jobs_sub.add_parser("cancel", parents=[common], help="cancel a queued or running job")
    cancel.add_argument("job_id")
    trials = jobs_sub.add_parser("trials", parents=[common], help="a job's trials")
    trials.add_argument("job_id")
    trials.add_argument("--after", type=int, default=None, help="only trials numbered above")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acprop-tuner",
        description="Find a safe, good initial learning rate for ACProp (optax.contrib.acprop).",
    )
    parser.add_argument("--version", action="version", version=f"acprop-tuner {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the main job end to end on the embedded database")
    demo.add_argument("--task", default="mlp-digits", help="built-in task to tune")
    demo.add_argument("--trials", type=int, default=None, help="number of trials")
    demo.add_argument("--workers", type=int, default=1, help="worker processes to start")
    demo.add_argument("--timeout", type=float, default=900.0, help="give up after seconds")
    demo.add_argument(
        "--sweep", action="store_true", help="only the engine: a learning-rate sweep, no server"
    )
    demo.add_argument(
        "--no-baselines", action="store_true", help="train no reference optimizers beside it"
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep the server running after the job (to browse the dashboard) until Ctrl-C",
    )

    from acprop_tuner.cli.tune import add_parser as add_tune_parser

    add_tune_parser(sub)

    serve = sub.add_parser("serve", help="run the REST API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)

    sub.add_parser("migrate", help="upgrade the database to the newest schema")

    keys = sub.add_parser("keys", help="create, revoke and list API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create a key; prints it alone on stdout, once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scope", required=True, choices=["user", "worker", "admin"])
    create.add_argument("--name", default=None, help="a label for the key")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    list_ = keys_sub.add_parser("list", help="list keys (never their secrets)")
    list_.add_argument("--tenant", default=None)

    worker = sub.add_parser("worker", help="lease trials from a server, train them, report back")
    worker.add_argument(
        "--server", required=True, help="base URL of the API, e.g. http://host:8000"
    )
    worker.add_argument(
        "--token",
        default=None,
        help="worker key; prefer the ACPROP_TUNER_WORKER_TOKEN environment variable, "
        "which keeps the secret out of the process list",
    )
    worker.add_argument("--capacity", type=int, default=8, help="trials trained at once (K)")
    worker.add_argument(
        "--seeds", type=int, default=None, help="seeds per trial (default: the job's)"
    )
    worker.add_argument("--device", default="cpu", help="cpu or gpu:N")
    worker.add_argument("--max-trials", type=int, default=None, help="exit after this many trials")
    worker.add_argument(
        "--idle-exit", type=float, default=None, help="exit after this many idle seconds"
    )
    worker.add_argument(
        "--allow-task-module",
        action="append",
        metavar="PREFIX",
        help="let jobs name `package.module:factory` tasks under this module prefix (repeat "
        "for more; also ACPROP_TUNER_ALLOWED_TASK_MODULES, comma-separated). Task code is "
        "trusted code: without this only built-in tasks and installed entry points run",
    )

    worker.add_argument(
        "--dataset-cache-dir",
        default=None,
        help="where users' data sets are kept (or ACPROP_TUNER_DATASET_CACHE_DIR; default "
        "~/.cache/acprop-tuner/datasets)",
    )
    worker.add_argument(
        "--dataset-cache-bytes",
        type=int,
        default=None,
        help="most bytes of data sets kept there, least recently used removed first (or "
        "ACPROP_TUNER_DATASET_CACHE_BYTES; default 4 GiB)",
    )

    rec = sub.add_parser("recommend", help="print a job's recommended ACProp configuration")
    rec.add_argument("job_id")
    rec.add_argument("--server", default=None, help="ask a running server instead of the database")
    rec.add_argument("--token", default=None, help="user key (or ACPROP_TUNER_TOKEN)")
    rec.add_argument("--json", action="store_true", help="print JSON")

    _add_jobs_parser(sub)
    _add_datasets_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = _HANDLERS[args.command].split(":")
    handler = getattr(importlib.import_module(module_name), func_name)
    try:
        code = int(handler(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe can still be answered
        return code
    except BrokenPipeError:
        # The reader went away (`acprop-tuner jobs list | head -1`): what it read was all it
        # wanted, so that is no error. Point stdout at /dev/null so that the interpreter's
        # last flush does not fail again on the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
