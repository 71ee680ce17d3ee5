"""ZeroMQ channels at startup and shutdown: an address in use stops startup
with one line; SIGTERM lets running requests answer, then sockets close."""

import json
import signal
from pathlib import Path

import pytest
import zmq

from tests.integration.broker_process import BrokerProcess, wait_for

HERE = Path(__file__).parent


def _config(tmp_path, bind):
    path = tmp_path / "zmq.yaml"
    path.write_text(f"""
name: zmqlife
services:
  paths: [{HERE.parents[1] / 'plugins'}, {HERE / 'zmq_plugins'}]
channels:
  - name: rr.slow
    type: zmq_router
    bind: {bind}
    service: zmqtest.slow_echo
outgoing:
  - name: pub
    type: zmq_pub
    bind: tcp://127.0.0.1:*
""")
    return path


def test_an_address_in_use_stops_startup_with_one_line(tmp_path):
    holder = zmq.Context.instance().socket(zmq.PULL)
    holder.setsockopt(zmq.LINGER, 0)
    try:
        holder.bind("tcp://127.0.0.1:*")
        taken = holder.getsockopt(zmq.LAST_ENDPOINT).decode()
        broker = BrokerProcess(config=_config(tmp_path, taken))
        with pytest.raises(RuntimeError) as info:
            broker.start()
    finally:
        holder.close()
    assert f"broker: zmq channel rr.slow: cannot use {taken}: Address already in use" in str(info.value)
    assert "Traceback" not in str(info.value)


def test_sigterm_lets_running_requests_answer_then_closes(tmp_path):
    broker = BrokerProcess(config=_config(tmp_path, "tcp://127.0.0.1:*")).start()
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        endpoint = next(line.split(" bound to ")[1].strip() for line in broker.lines
                        if "zmq channel rr.slow" in line and " bound to " in line)
        dealer.connect(endpoint)
        dealer.send_multipart([b"", json.dumps({"text": "late", "delay_ms": 500}).encode()])
        wait_for(lambda: json.loads(broker.request("GET", "/broker/metrics")[2])["counters"][
            "zmq.channel.rr.slow"]["in_flight"] == 1, "the request to start", 20)
        code = broker.stop()
        assert dealer.poll(5000), "the running request was not answered before shutdown"
        assert json.loads(dealer.recv_multipart()[1]) == {"text": "late"}
    finally:
        dealer.close()
        broker.stop()
    assert code in (0, -signal.SIGTERM)  # twistd re-raises SIGTERM after a clean stop
    assert "zmq channel rr.slow closed" in broker.output
    assert "Traceback" not in broker.output
