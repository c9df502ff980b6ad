"""The per-key token bucket, on a fake clock."""

from __future__ import annotations

import pytest

from service.ratelimit import TokenBucketLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate_per_s=2.0, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [None, None, None]
    wait = limiter.take("a")
    assert wait == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("a") is None
    assert limiter.take("a") == pytest.approx(0.5)


def test_keys_are_independent() -> None:
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=1, clock=Clock())
    assert limiter.take("a") is None
    assert limiter.take("a") is not None
    assert limiter.take("b") is None


def test_refill_is_capped_at_the_burst() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(rate_per_s=100.0, burst=2, clock=clock)
    limiter.take("a")
    clock.now += 1000
    assert [limiter.take("a") is None for _ in range(3)] == [True, True, False]


def test_memory_is_bounded() -> None:
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=1, clock=Clock(), max_keys=10)
    for i in range(100):
        limiter.take(i)
    assert len(limiter._buckets) == 10
