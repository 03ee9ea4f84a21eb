"""The librdkafka adapter's own logic: futures, error mapping, connection settings.

Its behaviour against a real broker is in tests/integration/test_clients.py.
"""

from __future__ import annotations

import confluent_kafka
import pytest
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
)

from har_stream.kafka.rdkafka_producer import (
    DeliveryFuture,
    RecordMetadata,
    as_kafka_error,
    rdkafka_config,
)
from har_stream.service.settings import KafkaSettings

META = RecordMetadata("t", 1, 42, 1_700_000_000_000, 1_700_000_000.5)


def no_flush(timeout: float | None) -> None:
    pass


def test_callbacks_added_before_or_after_delivery_run_exactly_once() -> None:
    future, seen = DeliveryFuture(no_flush), []
    future.add_callback(lambda m: seen.append(("early", m.offset)))
    future.add_errback(lambda e: seen.append(("error", e)))
    future._resolve(META, None)
    future.add_callback(lambda m: seen.append(("late", m.offset)))
    future.add_errback(lambda e: seen.append(("late error", e)))
    assert seen == [("early", 42), ("late", 42)]
    assert future.get(0) == META and future.succeeded()


def test_a_failed_delivery_runs_errbacks_and_get_raises_it() -> None:
    future, seen = DeliveryFuture(no_flush), []
    future.add_callback(seen.append)
    error = MessageSizeTooLargeError("too large")
    future._resolve(None, error)
    future.add_errback(seen.append)
    assert seen == [error] and not future.succeeded()
    with pytest.raises(MessageSizeTooLargeError):
        future.get(0)


def test_add_both_hears_the_outcome_once_whether_added_before_or_after_it() -> None:
    ok, seen = DeliveryFuture(no_flush), []
    ok.add_both(seen.append)
    ok._resolve(META, None)
    ok.add_both(seen.append)
    error = MessageSizeTooLargeError("too large")
    failed = DeliveryFuture(no_flush)
    failed.add_both(seen.append)
    failed._resolve(None, error)
    failed.add_both(seen.append)
    assert seen == [META, META, error, error]


class Message:
    """What librdkafka hands a delivery callback (the accessors the producer reads)."""

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 1

    def offset(self) -> int:
        return 42

    def timestamp(self) -> tuple[int, int]:
        return (confluent_kafka.TIMESTAMP_CREATE_TIME, 1_700_000_000_000)

    def latency(self) -> float:
        return 0.5


def test_a_delivery_report_becomes_metadata_acknowledged_at_send_time_plus_latency() -> None:
    future = DeliveryFuture(no_flush, sent_at=1_700_000_000.0)
    future._deliver(None, Message())
    assert future.get(0) == META
    failed = DeliveryFuture(no_flush)
    failed._deliver(confluent_kafka.KafkaError(confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE),
                    None)
    assert isinstance(failed.exception, MessageSizeTooLargeError)


def test_get_flushes_the_producer_until_the_outcome_is_known() -> None:
    flushed: list[float | None] = []

    def flush(timeout: float | None) -> None:
        flushed.append(timeout)
        future._resolve(META, None)

    future = DeliveryFuture(flush)
    assert future.get(3.0) == META and flushed == [3.0]
    assert future.get(3.0) == META and flushed == [3.0], "a known outcome needs no flush"


@pytest.mark.parametrize(("code", "expected"), [
    (confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE, MessageSizeTooLargeError),
    (confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED, TopicAuthorizationFailedError),
    (confluent_kafka.KafkaError._MSG_TIMED_OUT, KafkaTimeoutError),
])
def test_broker_error_codes_become_the_kafka_python_exceptions_the_outbox_knows(
        code: int, expected: type) -> None:
    assert type(as_kafka_error(confluent_kafka.KafkaError(code))) is expected


def test_other_local_errors_are_generic_and_keep_their_name() -> None:
    error = as_kafka_error(confluent_kafka.KafkaError(confluent_kafka.KafkaError._FATAL))
    assert type(error) is KafkaError and "_FATAL" in str(error)


def test_tls_and_sasl_settings_map_to_librdkafka_properties() -> None:
    tls = rdkafka_config(KafkaSettings(
        bootstrap_servers=" a:1, b:2 ", security_protocol="SSL", ssl_cafile="ca.pem",
        ssl_certfile="c.pem", ssl_keyfile="k.pem", ssl_password="pw",
        ssl_check_hostname=False))
    assert tls["bootstrap.servers"] == "a:1,b:2" and tls["security.protocol"] == "ssl"
    assert (tls["ssl.ca.location"], tls["ssl.certificate.location"],
            tls["ssl.key.location"], tls["ssl.key.password"]) == ("ca.pem", "c.pem", "k.pem", "pw")
    assert tls["ssl.endpoint.identification.algorithm"] == "none"
    sasl = rdkafka_config(KafkaSettings(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="u",
        sasl_password="p"))
    assert (sasl["sasl.mechanisms"], sasl["sasl.username"], sasl["sasl.password"]) == (
        "SCRAM-SHA-512", "u", "p")
    assert sasl["ssl.endpoint.identification.algorithm"] == "https"
    assert "ssl.ca.location" not in sasl  # unset files are left to librdkafka's defaults
    plain = rdkafka_config(KafkaSettings())
    assert not any(k.startswith(("ssl.", "sasl.")) for k in plain)
