"""The blocking-work thread pool: its bound holds real occupancy; stopping never blocks the reactor.

A fake reactor (calls from threads run when the test says so), real threads, Events: no sleeps.
"""

import threading

import pytest
from twisted.internet.defer import CancelledError

from broker.errors import ServiceUnavailable, Timeout
from broker.services.base import Service
from broker.services.threads import ThreadRunner
from broker.testing import call_service
from tests.unit.fake_reactor import ThreadedClock


@pytest.fixture
def blocker():
    """``call()`` blocks in its thread until ``release`` is set; ``started`` counts entries."""

    class Blocker:
        release = threading.Event()
        started = threading.Semaphore(0)

        def call(self):
            self.started.release()
            assert self.release.wait(30), "the test never released the call"
            return "done"

        def wait_started(self):
            assert self.started.acquire(timeout=30), "the call never started"

    blocker = Blocker()
    yield blocker
    blocker.release.set()


@pytest.fixture
def make_runner():
    made = []

    def make(**kwargs):
        clock = ThreadedClock()
        runner = ThreadRunner(clock, **kwargs)
        runner.startService()
        made.append(runner)
        return clock, runner

    yield make
    for runner in made:
        if runner.running:
            runner.stopService()


def _cancelled(deferred):
    deferred.cancel()
    failures = []
    deferred.addErrback(failures.append)
    assert failures and failures[0].check(CancelledError)


def test_a_call_whose_caller_gave_up_holds_its_place_until_it_returns(make_runner, blocker):
    clock, runner = make_runner(max_threads=1, max_queue=1)
    running = runner.run(blocker.call)
    blocker.wait_started()
    queued = runner.run(blocker.call)
    assert runner.metrics()["running"] == 1 and runner.metrics()["queued"] == 1
    _cancelled(running)  # the invoker's service timeout does this
    _cancelled(queued)
    with pytest.raises(ServiceUnavailable):
        runner.run(blocker.call)
    assert runner.counters["rejected"] == 1 and runner.pending == 2

    blocker.release.set()
    clock.run_next()  # the first call returns: its place is free again
    assert runner.pending == 1 and runner.counters["abandoned"] == 1
    clock.run_next()
    assert runner.pending == 0 and runner.counters["abandoned"] == 2
    answers = []
    runner.run(lambda: 42).addCallback(answers.append)
    clock.run_next()
    assert answers == [42]
    assert runner.metrics() == {"calls": 3, "rejected": 1, "abandoned": 2, "left_running": 0,
                                "running": 0, "queued": 0}


def test_calls_the_invoker_timed_out_still_fill_the_pool(make_runner, blocker):
    clock, runner = make_runner(max_threads=1, max_queue=1)

    class Blocking(Service):
        name = "test.blocking"

        def handle(self):
            return self.run_in_thread(blocker.call)

    outcomes = []
    for _ in range(2):
        call_service(Blocking, clock=clock, threads=runner).addBoth(outcomes.append)
    blocker.wait_started()
    clock.advance(30)  # the invoker's service_timeout
    assert [failure.check(Timeout) for failure in outcomes] == [Timeout, Timeout]
    call_service(Blocking, clock=clock, threads=runner).addBoth(outcomes.append)
    assert outcomes[2].check(ServiceUnavailable)
    blocker.release.set()
    clock.run_next(), clock.run_next()
    assert runner.pending == 0 and runner.counters["abandoned"] == 2


def test_a_failing_call_fails_its_deferred(make_runner):
    clock, runner = make_runner(max_threads=1, max_queue=1)
    failures = []
    runner.run(lambda: 1 / 0).addErrback(failures.append)
    clock.run_next()
    assert failures[0].check(ZeroDivisionError) and runner.pending == 0


def test_stopping_waits_for_running_calls_without_blocking(make_runner, blocker):
    clock, runner = make_runner(max_threads=2, max_queue=0, stop_timeout=10)
    answers = []
    runner.run(blocker.call).addCallback(answers.append)
    blocker.wait_started()
    stopped = runner.stopService()  # returns at once, the call still running
    assert not stopped.called
    blocker.release.set()
    clock.run_next()
    assert answers == ["done"] and stopped.called
    assert runner.counters["left_running"] == 0
    with pytest.raises(ServiceUnavailable):
        runner.run(blocker.call)
    for thread in list(runner.pool.threads):
        thread.join(30)
        assert not thread.is_alive()


def test_stopping_gives_up_on_a_stuck_call_at_the_deadline(make_runner, blocker):
    clock, runner = make_runner(max_threads=1, max_queue=0, stop_timeout=5)
    runner.run(blocker.call)
    blocker.wait_started()
    stopped = runner.stopService()
    clock.advance(4.9)
    assert not stopped.called
    clock.advance(0.1)
    assert stopped.called and runner.counters["left_running"] == 1
    assert all(thread.daemon for thread in runner.pool.threads)  # they do not hold the process
    blocker.release.set()
    clock.run_next()  # it returns later: counted as over, nobody waits for it
    assert runner.pending == 0


def test_stopping_an_idle_pool_is_done_at_once(make_runner):
    clock, runner = make_runner()
    stopped = runner.stopService()
    assert stopped.called
