"""Shared fixtures: one real Kafka-protocol broker for the whole session, fresh topics per test.

The broker is the embedded `tansu` (see har_stream.tools.broker); it starts only when a test asks
for it, so unit-test runs never pay for it. Tests isolate themselves with unique topic and
group names rather than restarting the broker.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from service_support import create_topics, topic_settings, unique  # tests/ is on sys.path

from har_stream.service.settings import KafkaSettings, Settings


@pytest.fixture(scope="session")
def broker() -> Iterator[object]:
    """A running embedded broker; `.bootstrap_servers` is its address."""
    try:
        from har_stream.tools.broker import BrokerError, EmbeddedBroker
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"embedded broker unavailable: {exc}")
    instance = EmbeddedBroker()
    try:
        instance.start()
    except BrokerError as exc:
        pytest.skip(str(exc))
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def kafka_settings(broker: object) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=broker.bootstrap_servers,  # type: ignore[attr-defined]
                         connect_timeout_s=10.0)


@pytest.fixture
def service_settings(kafka_settings: KafkaSettings) -> Settings:
    """Service settings for tests: own topics (created) and group, quick group protocol."""
    settings = Settings(kafka=kafka_settings, topics=topic_settings(), group_id=unique("group"),
                        session_timeout_ms=6000, heartbeat_interval_ms=1000, poll_timeout_ms=100,
                        commit_interval_s=0.2, metrics_address="", log_level="INFO")
    create_topics(settings)
    return settings
