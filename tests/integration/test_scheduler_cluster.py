"""Two broker nodes against a REAL Redis: one runs the job; when it is killed the other takes over."""

import json
import signal

import pytest

from tests.integration.broker_process import BrokerProcess, wait_for
from tests.integration.redis_support import delete_prefix, unique_prefix

CONFIG = """\
name: ${BROKER_NAME}
http:
  listen: ${BROKER_LISTEN}
connections:
  - {name: main, type: redis, port: 6379, timeout: 500ms}
scheduler:
  redis: main
  prefix: ${TEST_PREFIX}
  lock_ttl: 1s
  lock_renew: 200ms
  jobs:
    - {name: tick, service: broker.scheduler.list-jobs, interval: 100ms}
"""


def scheduler_metrics(node):
    status, _, body = node.request("GET", "/broker/metrics")
    assert status == 200, body
    return json.loads(body)["counters"]["scheduler"]





@pytest.fixture
def cluster(tmp_path):
    prefix = unique_prefix("sched")
    config = tmp_path / "cluster.yaml"
    config.write_text(CONFIG)
    nodes = [BrokerProcess(config, env={"BROKER_NAME": name, "TEST_PREFIX": prefix})
             for name in ("node-a", "node-b")]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        delete_prefix(prefix)


def test_one_node_runs_the_job_and_another_takes_over_when_it_dies(cluster):
    a, b = cluster
    leader = wait_for(lambda: next((n for n in cluster if scheduler_metrics(n)["runs"] >= 3), None),
                      "a node to run the job")
    other = b if leader is a else a
    assert "taken by this node" in leader.output
    other_metrics = wait_for(lambda: (m := scheduler_metrics(other))["not_leader"] >= 3 and m,
                             "the other node to see its fires are not its to run")
    assert other_metrics["runs"] == 0
    assert other_metrics["leader"] == 0 and scheduler_metrics(leader)["leader"] == 1

    leader._proc.kill()                       # dies without releasing the lock
    leader._proc.wait()
    wait_for(lambda: scheduler_metrics(other)["runs"] >= 3, "the other node to take over")
    assert "taken by this node" in other.output
    assert scheduler_metrics(other)["leader"] == 1


def test_a_stopped_holder_loses_the_lock_and_does_not_run_when_it_wakes(cluster):
    leader = wait_for(lambda: next((n for n in cluster if scheduler_metrics(n)["runs"] >= 3), None),
                      "a node to run the job")
    other = cluster[1] if leader is cluster[0] else cluster[0]
    leader._proc.send_signal(signal.SIGSTOP)   # frozen: no renewals, lock expires
    try:
        wait_for(lambda: scheduler_metrics(other)["runs"] >= 3, "the other node to take over")
    finally:
        leader._proc.send_signal(signal.SIGCONT)
    # Its renewal finds the other node's id, or times out first (it was frozen mid-call): lost
    # either way.
    other_name = other.env["BROKER_NAME"]
    wait_for(lambda: f"lost: node {other_name}:" in leader.output
             or "lost: lease ran out" in leader.output,
             "the woken node to find it no longer holds the lock")
    assert "another node" not in leader.output
    woke = scheduler_metrics(leader)
    assert woke["leader"] == 0
    target = scheduler_metrics(other)["runs"] + 5
    wait_for(lambda: scheduler_metrics(other)["runs"] >= target, "five more runs on the new leader")
    assert scheduler_metrics(leader)["runs"] == woke["runs"]
