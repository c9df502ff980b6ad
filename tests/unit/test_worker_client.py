"""The worker's HTTP client: retries, backoff, Retry-After, fencing (409) and secrecy of the token.

The transport is httpx's MockTransport (scripted answers, recorded requests) and, for real
connection failures, a TCP port with nobody listening. Sleeps are recorded instead of slept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections.abc import Callable

import httpx
import pytest

from acprop_tuner.cli.local import free_port
from worker.client import (
    ProtocolError,
    RetryPolicy,
    ServerUnavailable,
    WorkerClient,
)
from worker.protocol import Report, Result

TOKEN = "wk_secret_token_value"


class Script:
    """Answers requests from a list of (status, body, headers); records what was sent."""

    def __init__(self, answers: list[tuple[int, object, dict[str, str]] | Exception]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body, headers = answer
        return httpx.Response(status, json=body, headers=headers)

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests]


def make_client(
    script: Callable[[httpx.Request], httpx.Response], sleeps: list[float], attempts: int = 5
) -> WorkerClient:
    return WorkerClient(
        "http://tuner.test",
        TOKEN,
        retry=RetryPolicy(attempts=attempts, base_s=0.1, max_s=1.0),
        sleep=sleeps.append,
        seed=0,
        transport=httpx.MockTransport(script),
    )


def report(token: str, step: int = 10) -> Report:
    return Report(token, step, (1.0, None))


def test_token_is_sent_as_bearer_header() -> None:
    script = Script([(200, {"leases": [], "retry_after_s": 2.5}, {})])
    answer = make_client(script, []).lease("w1", 4)
    assert script.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert script.bodies() == [{"worker_id": "w1", "capacity": 4}]
    assert answer.leases == ()
    assert answer.retry_after_s == 2.5


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_retryable_status_then_success(status: int) -> None:
    sleeps: list[float] = []
    script = Script([(status, {"error": "x"}, {}), (200, {"stop": ["a"]}, {})])
    answer = make_client(script, sleeps).report([report("a")])
    assert answer.stop == frozenset({"a"})
    assert answer.accepted == ("a",)
    assert len(script.requests) == 2
    assert script.bodies()[0] == script.bodies()[1]  # the same call, resent unchanged
    assert len(sleeps) == 1


def test_retry_after_header_is_honoured() -> None:
    sleeps: list[float] = []
    script = Script([(503, {"error": "busy"}, {"Retry-After": "7"}), (200, {"stop": []}, {})])
    make_client(script, sleeps).report([report("a")])
    assert sleeps[0] >= 7.0


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(attempts=10, base_s=0.1, max_s=1.0)
    rng = random.Random(1)
    delays = [policy.delay(i, None, rng) for i in range(8)]
    for i, delay in enumerate(delays):
        cap = min(1.0, 0.1 * 2**i)
        assert cap / 2 <= delay <= cap
    assert max(delays) <= 1.0


def test_transport_errors_are_retried_then_give_up() -> None:
    sleeps: list[float] = []
    request = httpx.Request("POST", "http://tuner.test/")
    script = Script(
        [
            httpx.ConnectError("refused", request=request),
            httpx.ReadTimeout("slow", request=request),
            httpx.RemoteProtocolError("server died mid-answer", request=request),
        ]
    )
    with pytest.raises(ServerUnavailable) as info:
        make_client(script, sleeps, attempts=3).heartbeat(["a"])
    assert len(script.requests) == 3
    assert len(sleeps) == 2
    assert TOKEN not in str(info.value)


def test_connection_refused_on_a_real_port() -> None:
    port = free_port()  # bound and released: nobody listens on the port any more
    sleeps: list[float] = []
    client = WorkerClient(
        f"http://127.0.0.1:{port}",
        TOKEN,
        retry=RetryPolicy(attempts=3, base_s=0.01, max_s=0.02),
        sleep=sleeps.append,
    )
    with pytest.raises(ServerUnavailable):
        client.lease("w", 1)
    assert len(sleeps) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    sleeps: list[float] = []
    script = Script([(status, {"error": "bad", "detail": "no such thing"}, {})])
    with pytest.raises(ProtocolError) as info:
        make_client(script, sleeps).lease("w", 1)
    assert info.value.status == status
    assert len(script.requests) == 1
    assert sleeps == []


def test_409_drops_lost_tokens_and_resends_the_rest() -> None:
    script = Script(
        [
            (409, {"error": "lease_lost", "detail": {"lost": ["b"]}}, {}),
            (200, {"stop": ["c"]}, {}),
        ]
    )
    answer = make_client(script, []).report([report("a"), report("b"), report("c")])
    sent = [[r["token"] for r in body["reports"]] for body in script.bodies()]
    assert sent == [["a", "b", "c"], ["a", "c"]]
    assert answer.lost == frozenset({"b"})
    assert answer.accepted == ("a", "c")
    assert answer.stop == frozenset({"c"})


def test_409_for_every_token_sends_nothing_more() -> None:
    script = Script([(409, {"detail": {"lost": ["a", "b"]}}, {})])
    result = Result("a", (1.0,), (1.0,), (1.0,), (None,), False, 1.0, 0.0)
    answer = make_client(script, []).complete([result, dataclasses.replace(result, token="b")])
    assert len(script.requests) == 1
    assert answer.lost == frozenset({"a", "b"})
    assert answer.accepted == ()


def test_409_without_a_usable_list_counts_the_whole_call_as_lost() -> None:
    # Never loop forever on a 409 that names nothing we sent.
    script = Script([(409, {"detail": "gone"}, {})])
    answer = make_client(script, []).report([report("a")])
    assert answer.lost == frozenset({"a"})
    assert len(script.requests) == 1


def test_heartbeat_reports_lost_tokens() -> None:
    script = Script([(200, {"held": ["a"], "lost": ["b"], "expires_at": "x"}, {})])
    answer = make_client(script, []).heartbeat(["a", "b"])
    assert answer.held == frozenset({"a"})
    assert answer.lost == frozenset({"b"})


def test_release_skips_tokens_already_gone() -> None:
    script = Script([(409, {"detail": {"lost": ["a"]}}, {}), (200, {"released": ["b"]}, {})])
    released = make_client(script, []).release(["a", "b"])
    assert released == frozenset({"b"})
    assert script.bodies()[1] == {"tokens": ["b"]}


def test_token_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sleeps: list[float] = []
    script = Script([(503, {}, {}), (500, {}, {}), (200, {"leases": []}, {})])
    make_client(script, sleeps).lease("w", 1)
    assert len(caplog.records) > 0
    assert TOKEN not in caplog.text
