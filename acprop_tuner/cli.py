"""The `acprop-tuner` command line: one entry point that dispatches to the service, the worker
and the demo. Handlers are imported lazily so that `acprop-tuner serve` never imports JAX and
`acprop-tuner worker` never imports the database layer."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from acprop_tuner import __version__

# subcommand -> "module:function"; each function takes the parsed argparse.Namespace and
# returns a process exit code.
_HANDLERS = {
    "demo": "acprop_tuner.demo:main",
    "serve": "service.commands:serve",
    "migrate": "service.commands:migrate",
    "keys": "service.commands:keys",
    "worker": "worker.commands:worker",
    "recommend": "service.commands:recommend",
}


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

    rec = sub.add_parser("recommend", help="print a job's recommended ACProp configuration")
    rec.add_argument("job_id")
    rec.add_argument("--server", default=None, help="ask a running server instead of the database")
    rec.add_argument("--token", default=None, help="user key (or ACPROP_TUNER_TOKEN)")
    rec.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = _HANDLERS[args.command].split(":")
    handler = getattr(importlib.import_module(module_name), func_name)
    return int(handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
