"""Fixtures: one broker subprocess per test module, on a free port."""

import pytest

from tests.integration.broker_process import BrokerProcess


@pytest.fixture(scope="module")
def broker():
    process = BrokerProcess().start()
    yield process
    process.stop()
