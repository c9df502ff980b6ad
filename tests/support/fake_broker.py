"""A small in-memory implementation of the worker protocol on a real HTTP server (a thread).

For the worker loop's tests without a database: it hands out trials of one job (then, once no
trial waits, its baseline runs), fences writes with lease tokens (409 with `detail.lost`),
answers `stop` for trials a test marks, takes leases back on demand (as the reaper would), serves
the bytes of the data sets a test gives it (`GET /api/v1/worker/datasets/{sha256}`), and records
every call it served.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeTrial:
    trial_id: int
    number: int
    config: dict[str, float]
    attempt: int = 1
    state: str = "waiting"
    token: str | None = None
    reports: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None
    optimizer: str | None = None  # a baseline run's (its settings are `config`)


class FakeBroker:
    def __init__(
        self,
        configs: list[dict[str, float]],
        *,
        task: dict[str, Any],
        steps: int,
        report_every: int,
        seeds: list[int],
        ttl_s: float = 30.0,
        baselines: Sequence[tuple[str, dict[str, float]]] = (),
    ) -> None:
        self.trials = [FakeTrial(i + 100, i, dict(c)) for i, c in enumerate(configs)]
        self.runs = [
            FakeTrial(i + 500, i, dict(settings), optimizer=name)
            for i, (name, settings) in enumerate(baselines)
        ]
        self.task, self.steps, self.report_every, self.seeds = task, steps, report_every, seeds
        self.ttl_s = ttl_s
        self.stop_numbers: set[int] = set()
        self.calls: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        # Called (under the lock) after each accepted report, with the trial and the step.
        self.on_report: Callable[[FakeTrial, int], None] | None = None
        self.unavailable_completes = 0  # answer this many `complete` calls with a 503
        self.datasets: dict[str, bytes] = {}  # sha256 -> the bytes served for it
        self.unavailable_gets = 0  # answer this many data set requests with a 503

    # -- test controls ---------------------------------------------------------------------

    def take_back(self, number: int) -> None:
        """What the reaper does to an expired lease: the token is no longer current."""
        with self.lock:
            self.take_back_locked(number)

    def take_back_locked(self, number: int) -> None:
        trial = self.trials[number]
        trial.token, trial.state, trial.attempt = None, "waiting", trial.attempt + 1

    def by_token(self, token: str) -> FakeTrial | None:
        return next((t for t in [*self.trials, *self.runs] if t.token == token), None)

    def calls_to(self, path: str) -> list[Any]:
        return [body for p, body in self.calls if p == path]

    # -- the protocol ----------------------------------------------------------------------

    def handle(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls.append((path, body))
            if path == "/api/v1/leases/complete" and self.unavailable_completes > 0:
                self.unavailable_completes -= 1
                return 503, {"error": "unavailable", "detail": "database restarting"}
            if path == "/api/v1/leases":
                return 200, self._lease(int(body["capacity"]))
            if path == "/api/v1/leases/heartbeat":
                held = [t for t in body["tokens"] if self.by_token(t)]
                lost = [t for t in body["tokens"] if not self.by_token(t)]
                return 200, {"held": held, "lost": lost, "expires_at": "later"}
            items = (
                body.get("reports")
                or body.get("results")
                or body.get("failures")
                or body.get("tokens")
                or []
            )
            tokens = [i if isinstance(i, str) else i["token"] for i in items]
            lost = [t for t in tokens if self.by_token(t) is None]
            if lost:
                return 409, {"error": "lease_lost", "detail": {"lost": lost}}
            if path == "/api/v1/leases/report":
                stop = []
                for item in items:
                    trial = self.by_token(item["token"])
                    assert trial is not None
                    trial.reports.append({"step": item["step"], "losses": item["losses"]})
                    if trial.number in self.stop_numbers:
                        stop.append(item["token"])
                for item in items:
                    trial = self.by_token(item["token"])
                    if trial is not None and self.on_report is not None:
                        self.on_report(trial, item["step"])
                return 200, {"stop": stop}
            if path == "/api/v1/leases/complete":
                for item in items:
                    trial = self.by_token(item["token"])
                    assert trial is not None
                    trial.result, trial.state, trial.token = item, "finished", None
                return 200, {"accepted": tokens}
            if path == "/api/v1/leases/fail":
                for item in items:
                    trial = self.by_token(item["token"])
                    assert trial is not None
                    trial.error, trial.state, trial.token = item["error"], "failed", None
                return 200, {"accepted": tokens}
            if path == "/api/v1/leases/release":
                for token in tokens:
                    trial = self.by_token(token)
                    assert trial is not None
                    trial.token, trial.state = None, "waiting"
                return 200, {"released": tokens}
            return 404, {"error": "not_found"}

    def handle_get(self, path: str) -> tuple[int, bytes]:
        with self.lock:
            self.calls.append((path, None))
            if self.unavailable_gets > 0:
                self.unavailable_gets -= 1
                return 503, b'{"error": "unavailable", "detail": "restarting"}'
            prefix = "/api/v1/worker/datasets/"
            name = path[len(prefix) :] if path.startswith(prefix) else None
            if name in self.datasets:
                return 200, self.datasets[name]
            return 404, json.dumps({"error": "not_found", "detail": "no data set"}).encode()

    def _lease(self, capacity: int) -> dict[str, Any]:
        leases = []
        for trial in self.trials:
            if len(leases) == capacity:
                break
            if trial.state != "waiting":
                continue
            trial.state, trial.token = "running", "lt_" + secrets.token_urlsafe(8)
            leases.append(
                {
                    "token": trial.token,
                    "expires_at": "later",
                    "ttl_s": self.ttl_s,
                    "trial": {
                        "job_id": "job-1",
                        "trial_id": trial.trial_id,
                        "number": trial.number,
                        "attempt": trial.attempt,
                        "task": self.task,
                        "config": trial.config,
                        "seeds": self.seeds,
                        "steps": self.steps,
                        "report_every": self.report_every,
                    },
                }
            )
        runs = [] if leases else self._lease_runs(capacity)
        return {
            "leases": leases,
            "baselines": runs,
            "retry_after_s": None if leases or runs else 0.05,
        }

    def _lease_runs(self, capacity: int) -> list[dict[str, Any]]:
        out = []
        for run in self.runs:
            if len(out) == capacity:
                break
            if run.state != "waiting":
                continue
            run.state, run.token = "running", "lb_" + secrets.token_urlsafe(8)
            out.append(
                {
                    "token": run.token,
                    "expires_at": "later",
                    "ttl_s": self.ttl_s,
                    "run": {
                        "job_id": "job-1",
                        "run_id": run.trial_id,
                        "number": run.number,
                        "kind": "check" if run.optimizer == "acprop" else "baseline",
                        "attempt": run.attempt,
                        "task": self.task,
                        "optimizer": run.optimizer,
                        "settings": run.config,
                        "seeds": self.seeds,
                        "steps": self.steps,
                        "report_every": self.report_every,
                    },
                }
            )
        return out


#: A request handler: (path, decoded JSON body, request headers) -> (status, JSON answer).
Handle = Callable[[str, Any, Mapping[str, str]], tuple[int, Any]]
#: A GET handler: (path, request headers) -> (status, body bytes).
HandleGet = Callable[[str, Mapping[str, str]], tuple[int, bytes]]


@contextmanager
def serve_json(handle: Handle, get: HandleGet | None = None) -> Iterator[str]:
    """A JSON-over-HTTP POST server (and GET, with ``get``) on a free local port, in a
    thread; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, payload = get(self.path, dict(self.headers)) if get else (404, b"{}")
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, answer = handle(
                self.path, json.loads(self.rfile.read(length) or b"null"), dict(self.headers)
            )
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve(broker: FakeBroker) -> Iterator[str]:
    """The fake broker behind a worker key ``wk_test``."""

    def handle(path: str, body: Any, headers: Mapping[str, str]) -> tuple[int, Any]:
        assert headers["Authorization"] == "Bearer wk_test"
        return broker.handle(path, body)

    def get(path: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        assert headers["Authorization"] == "Bearer wk_test"
        return broker.handle_get(path)

    with serve_json(handle, get) as url:
        yield url
