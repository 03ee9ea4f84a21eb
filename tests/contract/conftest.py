"""The contract suite's one fixture: `driver`, the same tests over every Kafka driver.

Every test of tests/contract/ takes `driver` and runs once per driver: `memory` (an
in-process `MemoryCluster`, fresh per test), `kafka-python` and `librdkafka` (clients built
by the factories of `har_stream.kafka.clients` against the embedded broker). The test gets
a `Kafka` harness (`contract_support`) for topics and clients. A driver whose modules are
not there yet is skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest
from contract_support import Kafka  # tests/contract/ is on sys.path (this file's dir)

DRIVERS = ("memory", "kafka-python", "librdkafka")
DRIVER_MODULES = {"kafka-python": "har_stream.kafka.drivers.kafka_python_consumer",
                  "librdkafka": "har_stream.kafka.drivers.librdkafka_consumer"}
GROUP_CONFIG = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
"""Group timing of the real members: a member that leaves is replaced quickly."""


def _memory() -> Kafka:
    from har_stream.kafka.drivers.memory import MemoryCluster

    cluster = MemoryCluster()
    kafka = Kafka("memory", cluster.admin(), cluster.producer, cluster.consumer,
                  cluster.consumer)
    kafka.cluster = cluster  # type: ignore[attr-defined]  # for memory-only checks
    return kafka


def _real(name: str, kafka_settings: Any) -> Kafka:
    from har_stream.kafka import clients

    settings = dataclasses.replace(kafka_settings, producer_client=name, consumer_client=name)
    return Kafka(name, clients.make_admin(settings),
                 lambda: clients.make_producer(settings, linger_ms=1),
                 lambda group: clients.make_consumer(settings, group_id=group),
                 lambda group: clients.make_group_consumer(settings, group, **GROUP_CONFIG))


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> Iterator[Kafka]:
    name = request.param
    if name == "memory":
        kafka = _memory()
    else:
        module = DRIVER_MODULES[name]
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            pytest.skip(f"the {name} driver is not there yet ({module} is not importable)")
        kafka = _real(name, request.getfixturevalue("kafka_settings"))
    try:
        yield kafka
    finally:
        kafka.close()
