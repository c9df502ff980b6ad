"""`acprop-tuner worker`: the command that runs one worker process.

Owns what must happen before JAX initialises (pinning the process to one device; the population
trainer turns on the persistent compilation cache in `ACPROP_TUNER_JAX_CACHE_DIR`), reading the
token (from `--token` or the environment, never printed), where users' data sets are cached
(`--dataset-cache-dir`, `--dataset-cache-bytes`), signal handling (SIGTERM/SIGINT: finish the
current chunk, give the unfinished leases back, exit 0) and wiring the client, heartbeat and
loop together. See docs/workers.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from pathlib import Path
from types import FrameType

from optimizer.tasks.trust import TaskTrust
from worker.datasets import CACHE_BYTES_ENV, CACHE_DIR_ENV, DEFAULT_CACHE_BYTES, default_cache_dir

TOKEN_ENV = "ACPROP_TUNER_WORKER_TOKEN"

log = logging.getLogger("worker")


class DeviceError(ValueError):
    """`--device` is neither `cpu` nor `gpu:N`."""


def pin_device(device: str) -> None:
    """Restrict this process to one device. Must run before JAX is imported: JAX reads
    `JAX_PLATFORMS` and CUDA reads `CUDA_VISIBLE_DEVICES` once, at initialisation. With
    `gpu:N` the process sees only GPU N (as its device 0), so one worker per GPU never
    touches, or preallocates memory on, another worker's GPU."""
    if "jax" in sys.modules:
        raise RuntimeError("pin_device must run before jax is imported")
    if device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
        return
    kind, _, index = device.partition(":")
    if kind not in ("gpu", "cuda") or not index.isdigit():
        raise DeviceError(f"--device must be 'cpu' or 'gpu:N' (N a GPU index), got {device!r}")
    os.environ["CUDA_VISIBLE_DEVICES"] = index
    os.environ["JAX_PLATFORMS"] = "cuda"


def check_device(device: str) -> str | None:
    """With `gpu:N`, make sure JAX sees that GPU now, at start-up, rather than failing at the
    first lease (or never, on an idle server). Returns a problem, or None."""
    if device == "cpu":
        return None
    try:
        import jax

        devices = jax.devices()
    # Any failure here means the same thing (no such GPU, no CUDA build of jaxlib; the CPU
    # build even fails an internal assertion when asked for "cuda").
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"--device {device}: JAX cannot use that GPU ({first_line}); check the index "
            "against `nvidia-smi -L` and that the CUDA build of jax is installed"
        )
    log.info("device %s: %s", device, ", ".join(str(d) for d in devices))
    return None


def _validate(args: argparse.Namespace) -> str | None:
    if args.capacity < 1:
        return "--capacity must be >= 1"
    if args.seeds is not None and args.seeds < 1:
        return "--seeds must be >= 1"
    if args.max_trials is not None and args.max_trials < 1:
        return "--max-trials must be >= 1"
    if args.idle_exit is not None and args.idle_exit < 0:
        return "--idle-exit must be >= 0"
    try:
        TaskTrust.of(args.allow_task_module or ())
    except ValueError as exc:
        return str(exc)
    cache_bytes = _cache_bytes(args)
    if cache_bytes is None or cache_bytes < 0:
        return f"--dataset-cache-bytes (or {CACHE_BYTES_ENV}) must be an integer >= 0"
    return None


def _cache_bytes(args: argparse.Namespace) -> int | None:
    """The data set cache's bound: the flag, else the environment, else the default."""
    if args.dataset_cache_bytes is not None:
        return int(args.dataset_cache_bytes)
    raw = os.environ.get(CACHE_BYTES_ENV)
    if raw is None:
        return DEFAULT_CACHE_BYTES
    return int(raw) if raw.strip().isdigit() else None


def _cache_dir(args: argparse.Namespace) -> Path:
    raw = args.dataset_cache_dir or os.environ.get(CACHE_DIR_ENV)
    return Path(raw) if raw else default_cache_dir()


def worker(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=os.environ.get("ACPROP_TUNER_WORKER_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request line at INFO; the URL holds no secret, but it is noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    problem = _validate(args)
    token: str = args.token or os.environ.get(TOKEN_ENV) or ""
    if problem is None and not token:
        problem = f"a worker key is required: pass --token or set {TOKEN_ENV}"
    if problem is not None:
        print(f"acprop-tuner worker: {problem}", file=sys.stderr)
        return 2
    try:
        pin_device(args.device)
    except DeviceError as exc:
        print(f"acprop-tuner worker: {exc}", file=sys.stderr)
        return 2
    device_problem = check_device(args.device)
    if device_problem is not None:
        print(f"acprop-tuner worker: {device_problem}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        # Only set a flag: the loop finishes its chunk and gives its leases back.
        log.info("received %s: finishing the current chunk", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    # Imported late: the loop imports the population trainer, and with it JAX.
    from worker.client import WorkerClient
    from worker.journal import Journal
    from worker.loop import WorkerLoop, WorkerOptions

    worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    client = WorkerClient(args.server, token)
    journal = Journal.from_env(worker_id=worker_id)
    options = WorkerOptions(
        worker_id=worker_id,
        capacity=args.capacity,
        seeds=args.seeds,
        max_trials=args.max_trials,
        idle_exit_s=args.idle_exit,
        allowed_task_modules=TaskTrust.of(args.allow_task_module or ()).modules,
        dataset_cache_dir=_cache_dir(args),
        dataset_cache_bytes=_cache_bytes(args) or 0,
    )
    log.info(
        "worker %s: server %s, capacity %d, device %s",
        worker_id,
        args.server,
        args.capacity,
        args.device,
    )
    try:
        return WorkerLoop(client, options, stop=stop, journal=journal).run()
    finally:
        client.close()
        journal.close()
