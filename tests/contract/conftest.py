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
import raw_records  # tests/ is on sys.path (the parent conftest's dir)
from contract_support import Kafka  # tests/contract/ is on sys.path (this file's dir)

from har_stream.kafka.ports import BAD_CHECKSUM, BAD_COMPRESSION, BAD_HEADER

DRIVERS = ("memory", "kafka-python", "librdkafka")
DRIVER_MODULES = {"kafka-python": "har_stream.kafka.drivers.kafka_python_consumer",
                  "librdkafka": "har_stream.kafka.drivers.librdkafka_consumer"}
DISAGREEMENTS: dict[tuple[str, str], str] = {}
"""Where a driver disagrees with the ports today: expected to fail (strict: once the driver
is fixed the test passes, and the entry must go)."""
GROUP_CONFIG = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
"""Group timing of the real members: a member that leaves is replaced quickly."""


def _memory() -> Kafka:
    from har_stream.kafka.drivers.memory import MemoryCluster

    cluster = MemoryCluster()

    def unreadable(topic: str, partition: int, reason: str, key: bytes, value: bytes) -> int:
        offset = cluster.put(topic, partition, key, value, [("ok", b"1")])
        cluster.damage(topic, partition, offset, reason)
        return offset

    kafka = Kafka("memory", cluster.admin(), cluster.producer, cluster.consumer,
                  cluster.consumer, unreadable)
    kafka.cut = lambda: setattr(cluster, "reachable", False)
    kafka.restore = lambda: setattr(cluster, "reachable", True)
    return kafka


def _real(name: str, kafka_settings: Any) -> Kafka:
    from har_stream.kafka import clients

    settings = dataclasses.replace(kafka_settings, producer_client=name, consumer_client=name)

    def unreadable(topic: str, partition: int, reason: str, key: bytes, value: bytes) -> int:
        """A batch of one record no client can read whole, written straight to the broker."""
        headers: list[tuple[Any, bytes]] = [("ok", b"1")]
        if reason == BAD_HEADER:
            data = raw_records.batch([(key, value, [*headers, (raw_records.RawKey(b"\xff\xfe"),
                                                              b"v")])])
        elif reason == BAD_CHECKSUM:
            data = raw_records.bad_checksum([(key, value, headers)])
        else:
            assert reason == BAD_COMPRESSION, reason
            data = raw_records.undecompressable([(key, value, headers)])
        return raw_records.produce_batch(settings, topic, partition, bytes(data))

    return Kafka(name, clients.make_admin(settings),
                 lambda: clients.make_producer(settings, linger_ms=1),
                 lambda group: clients.make_consumer(settings, group_id=group),
                 lambda group: clients.make_consumer(settings, group, **GROUP_CONFIG),
                 unreadable)


def _skip_missing(name: str) -> None:
    module = DRIVER_MODULES[name]
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:
        found = False
    if not found:
        pytest.skip(f"the {name} driver is not there yet ({module} is not importable)")


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> Iterator[Kafka]:
    name = request.param
    reason = DISAGREEMENTS.get((request.function.__name__, name))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    if name == "memory":
        kafka = _memory()
    else:
        _skip_missing(name)
        kafka = _real(name, request.getfixturevalue("kafka_settings"))
    try:
        yield kafka
    finally:
        kafka.close()


@pytest.fixture(params=DRIVERS)
def severable(request: pytest.FixtureRequest) -> Iterator[Kafka]:
    """A driver whose cluster a test can cut off (`cut()`) and bring back (`restore()`):
    the memory cluster's `reachable`, or a relay in front of a broker of the test's own
    (which advertises the relay, so that every connection goes through it)."""
    name = request.param
    if name == "memory":
        kafka = _memory()
        try:
            yield kafka
        finally:
            kafka.close()
        return
    _skip_missing(name)
    from network_support import AdvertisingBroker, Relay

    from har_stream.service.settings import KafkaSettings
    from har_stream.tools.broker import free_port

    port = free_port()
    broker = AdvertisingBroker(advertised_port=port)
    relay = Relay(broker.port, port)
    try:
        kafka = _real(name, KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}",
                                          connect_timeout_s=10.0))
        kafka.cut, kafka.restore = relay.cut, relay.restore
        try:
            yield kafka
        finally:
            kafka.close()
    finally:
        relay.close()
        broker.process.kill()  # its storage is memory: nothing to shut down cleanly (a
        broker.stop()  # terminated broker takes 5 s to exit)
