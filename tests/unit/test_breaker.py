"""The circuit breaker that stops hammering a dead Redis."""

from twisted.internet import task

from broker.redis.breaker import CircuitBreaker


def test_opens_after_consecutive_failures_and_refuses_calls():
    clock = task.Clock()
    breaker = CircuitBreaker(clock, failures=3, reset=5)
    for _ in range(2):
        assert breaker.allow()
        breaker.failed()
    assert breaker.state == "closed"
    assert breaker.allow()
    breaker.failed()
    assert breaker.state == "open" and breaker.counters["opened"] == 1
    assert not breaker.allow() and not breaker.allow()
    assert breaker.counters["short_circuited"] == 2


def test_a_success_resets_the_failure_count():
    breaker = CircuitBreaker(task.Clock(), failures=2, reset=5)
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    assert breaker.state == "closed"


def test_after_reset_one_probe_goes_out_and_its_result_decides():
    clock = task.Clock()
    breaker = CircuitBreaker(clock, failures=1, reset=5)
    breaker.failed()
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()                 # the probe
    assert breaker.state == "half_open"
    assert not breaker.allow()             # only one probe at a time
    breaker.failed()                       # probe failed: open for another period
    assert breaker.state == "open" and breaker.counters["opened"] == 2
    assert not breaker.allow()
    clock.advance(5)
    assert breaker.allow()
    breaker.succeeded()                    # probe succeeded: closed
    assert breaker.state == "closed"
    assert breaker.allow() and breaker.allow()
    assert breaker.counters["probes"] == 2
