"""The worker loop against a real HTTP server (an in-memory broker in a thread), training for
real with the population trainer on Rosenbrock: batching, pruning, fencing, release on stop,
and one compilation per (task, K, S, chunk)."""

from __future__ import annotations

import threading

import pytest

from tests.support.fake_broker import FakeBroker, FakeTrial, serve
from worker.client import RetryPolicy, WorkerClient
from worker.heartbeat import Heartbeat
from worker.loop import WorkerLoop, WorkerOptions

SAFE = {"learning_rate": 1e-3, "eps_root": 1e-8}
# optax's default eps_root blows Rosenbrock up at step 3 (facts.md, optax issue 1132).
BLOWS_UP = {"learning_rate": 0.1}
STEPS, EVERY = 40, 10


def broker(configs: list[dict[str, float]], seeds: list[int] | None = None) -> FakeBroker:
    return FakeBroker(
        configs,
        task={"name": "rosenbrock", "options": {}},
        steps=STEPS,
        report_every=EVERY,
        seeds=seeds or [0, 1],
    )


def run_worker(url: str, capacity: int = 4, stop: threading.Event | None = None) -> WorkerLoop:
    client = WorkerClient(url, "wk_test", retry=RetryPolicy(attempts=2, base_s=0.01, max_s=0.02))
    loop = WorkerLoop(
        client, WorkerOptions("w-test", capacity=capacity, idle_exit_s=0.2), stop=stop
    )
    assert loop.run() == 0
    return loop


def config(lr: float) -> dict[str, float]:
    return {"learning_rate": lr, "eps_root": 1e-8}


def test_trains_all_trials_with_one_report_per_chunk() -> None:
    fb = broker([config(1e-3 * (1 + 0.1 * i)) for i in range(5)] + [BLOWS_UP])
    with serve(fb) as url:
        run_worker(url, capacity=4)
    assert [t.state for t in fb.trials] == ["finished"] * 6
    leases = fb.calls_to("/api/v1/leases")
    assert leases[0]["capacity"] == 4
    # One report call per chunk carries every live trial of its batch.
    report_sizes = [len(body["reports"]) for body in fb.calls_to("/api/v1/leases/report")]
    assert report_sizes == [4, 4, 4, 4, 1, 1, 1, 1]
    for trial in fb.trials[:5]:
        assert [r["step"] for r in trial.reports] == [10, 20, 30, 40]
        assert all(len(r["losses"]) == 2 for r in trial.reports)
        assert trial.result is not None
        assert trial.result["diverged_at_step"] == [None, None]
        assert len(trial.result["final_losses"]) == 2
        assert trial.result["pruned"] is False
    diverged = fb.trials[5]
    assert diverged.reports == []  # diverged inside the first chunk: nothing worth reporting
    assert diverged.result is not None
    assert all(d is not None and 1 <= d <= EVERY for d in diverged.result["diverged_at_step"])
    assert all(x is not None for x in diverged.result["last_finite_losses"])
    # The second batch (2 trials padded to K=4) reused the first batch's program.
    assert diverged.result["compile_s"] == 0.0
    assert fb.trials[4].result is not None and fb.trials[4].result["compile_s"] == 0.0
    # Two completion calls: one per batch.
    assert [len(b["results"]) for b in fb.calls_to("/api/v1/leases/complete")] == [4, 2]


def test_stopped_trial_is_frozen_and_completed_as_pruned() -> None:
    fb = broker([SAFE, config(2e-3), config(3e-3)])
    fb.stop_numbers = {1}
    with serve(fb) as url:
        run_worker(url)
    pruned = fb.trials[1]
    assert [r["step"] for r in pruned.reports] == [10]
    assert pruned.result is not None and pruned.result["pruned"] is True
    for trial in (fb.trials[0], fb.trials[2]):
        assert [r["step"] for r in trial.reports] == [10, 20, 30, 40]
        assert trial.result is not None and trial.result["pruned"] is False


def test_lost_lease_is_dropped_and_the_retry_has_identical_params() -> None:
    fb = broker([SAFE, config(2e-3), config(3e-3)])

    def reap_trial_1_after_step_10(trial: FakeTrial, step: int) -> None:
        if trial.number == 1 and trial.attempt == 1 and step == 10:
            fb.take_back_locked(1)

    fb.on_report = reap_trial_1_after_step_10
    with serve(fb) as url:
        run_worker(url)
    reports = fb.calls_to("/api/v1/leases/report")
    # The 409'd call was resent without the lost trial.
    assert len(reports[1]["reports"]) == 3 and len(reports[2]["reports"]) == 2
    first_results = fb.calls_to("/api/v1/leases/complete")[0]["results"]
    assert len(first_results) == 2
    retried = fb.trials[1]
    assert retried.attempt == 2 and retried.state == "finished"
    second_lease = fb.calls_to("/api/v1/leases")[1]
    assert second_lease["capacity"] == 4
    assert [r["step"] for r in retried.reports] == [10, 10, 20, 30, 40]


def test_stop_request_finishes_the_chunk_and_releases() -> None:
    fb = broker([SAFE, config(2e-3)])
    stop = threading.Event()

    def sigterm_at_step_20(trial: FakeTrial, step: int) -> None:
        if step == 20:
            stop.set()

    fb.on_report = sigterm_at_step_20
    with serve(fb) as url:
        loop = run_worker(url, stop=stop)
    assert [t.state for t in fb.trials] == ["waiting", "waiting"]
    assert [r["step"] for r in fb.trials[0].reports] == [10, 20]
    assert len(fb.calls_to("/api/v1/leases/release")[0]["tokens"]) == 2
    assert fb.calls_to("/api/v1/leases/complete") == []
    assert loop.stats.released == 2


def test_heartbeat_renews_and_reports_lost() -> None:
    fb = broker([SAFE, config(2e-3)])
    with serve(fb) as url:
        client = WorkerClient(url, "wk_test")
        answer = client.lease("w", 2)
        tokens = [lease.token for lease in answer.leases]
        seen: list[frozenset[str]] = []
        hb = Heartbeat(client.clone(), interval_s=60, on_lost=seen.append)
        hb.track(tokens)
        hb.beat()
        assert hb.lost() == frozenset()
        fb.take_back(0)
        hb.beat()
        assert hb.lost() == frozenset({tokens[0]})
        assert seen == [frozenset({tokens[0]})]
        hb.beat()  # a lost token is not renewed again
        assert fb.calls_to("/api/v1/leases/heartbeat")[-1]["tokens"] == [tokens[1]]
        client.close()


@pytest.mark.parametrize("capacity", [1, 3])
def test_capacity_bounds_each_lease(capacity: int) -> None:
    fb = broker([config(1e-3 * (i + 1)) for i in range(3)], seeds=[0])
    with serve(fb) as url:
        run_worker(url, capacity=capacity)
    assert all(body["capacity"] == capacity for body in fb.calls_to("/api/v1/leases"))
    assert [t.state for t in fb.trials] == ["finished"] * 3


def test_trials_it_cannot_train_are_failed_with_the_reason_not_crashed_on() -> None:
    fb = FakeBroker(
        [SAFE],
        task={"name": "no-such-task", "options": {}},
        steps=STEPS,
        report_every=EVERY,
        seeds=[0],
    )
    with serve(fb) as url:
        loop = run_worker(url)
    # Leased once, never reported, completed or released: failed on the server with the
    # reason (the exception's class and message), and the worker lives on to lease again.
    assert len(fb.calls_to("/api/v1/leases")) >= 2
    assert fb.trials[0].state == "failed"
    assert fb.trials[0].error is not None
    assert fb.trials[0].error.startswith("TaskOptionsError: unknown task 'no-such-task'")
    assert "Traceback" not in fb.trials[0].error
    assert fb.calls_to("/api/v1/leases/report") == []
    assert fb.calls_to("/api/v1/leases/complete") == []
    assert fb.calls_to("/api/v1/leases/release") == []
    assert loop.heartbeat.lost() == frozenset()


def test_a_completion_rides_out_an_outage_longer_than_one_retry_budget() -> None:
    fb = broker([SAFE, config(2e-3)])
    fb.unavailable_completes = 3  # the client's budget here is 2 attempts per call
    with serve(fb) as url:
        loop = run_worker(url)
    assert [t.state for t in fb.trials] == ["finished", "finished"]
    assert len(fb.calls_to("/api/v1/leases/complete")) == 4
    assert loop.stats.completed == 2
