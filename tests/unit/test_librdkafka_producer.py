"""The librdkafka producer driver's own logic: deliveries, error mapping, connection settings.

Its behaviour against a real broker is checked by the contract suite (tests/contract/) and
tests/integration/test_clients.py.
"""

from __future__ import annotations

import confluent_kafka
import pytest

from har_stream.kafka.connect import rdkafka_config
from har_stream.kafka.drivers.librdkafka_producer import RdKafkaDelivery, as_failure
from har_stream.kafka.ports import (
    Acknowledged,
    CommitFailed,
    KafkaFailure,
    KafkaTimeout,
    RecordRefused,
    TopicMissing,
)
from har_stream.kafka.settings import KafkaSettings

ACK = Acknowledged("t", 1, 42, 1_700_000_000_000, 1_700_000_000.5)


def no_flush(timeout: float | None) -> None:
    pass


def test_add_both_hears_the_outcome_once_whether_added_before_or_after_it() -> None:
    ok, seen = RdKafkaDelivery(no_flush), list[object]()
    ok.add_both(seen.append)
    ok._resolve(ACK)
    ok.add_both(seen.append)
    error = RecordRefused("too large", 10)
    failed = RdKafkaDelivery(no_flush)
    failed.add_both(seen.append)
    failed._resolve(error)
    failed.add_both(seen.append)
    assert seen == [ACK, ACK, error, error]
    assert ok.get(0) == ACK
    with pytest.raises(RecordRefused):
        failed.get(0)


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


def test_a_delivery_report_is_acknowledged_at_send_time_plus_latency() -> None:
    delivery = RdKafkaDelivery(no_flush, sent_at=1_700_000_000.0)
    delivery._deliver(None, Message())
    assert delivery.get(0) == ACK
    failed = RdKafkaDelivery(no_flush)
    failed._deliver(confluent_kafka.KafkaError(confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE),
                    None)
    assert isinstance(failed.outcome, RecordRefused) and failed.outcome.code == 10


def test_get_flushes_the_producer_until_the_outcome_is_known() -> None:
    flushed: list[float | None] = []

    def flush(timeout: float | None) -> None:
        flushed.append(timeout)
        delivery._resolve(ACK)

    delivery = RdKafkaDelivery(flush)
    assert delivery.get(3.0) == ACK and flushed == [3.0]
    assert delivery.get(3.0) == ACK and flushed == [3.0], "a known outcome needs no flush"


@pytest.mark.parametrize(("code", "expected"), [
    (confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE, RecordRefused),
    (confluent_kafka.KafkaError.RECORD_LIST_TOO_LARGE, RecordRefused),
    (confluent_kafka.KafkaError.INVALID_RECORD, RecordRefused),
    (confluent_kafka.KafkaError.INVALID_TIMESTAMP, RecordRefused),
    (confluent_kafka.KafkaError.REQUEST_TIMED_OUT, KafkaTimeout),
    (confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART, TopicMissing),
    (confluent_kafka.KafkaError.REBALANCE_IN_PROGRESS, CommitFailed),
    (confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaFailure),
])
def test_broker_error_codes_become_our_failures_and_keep_their_code(
        code: int, expected: type) -> None:
    failure = as_failure(confluent_kafka.KafkaError(code))
    assert type(failure) is expected and failure.code == code


@pytest.mark.parametrize("code", [confluent_kafka.KafkaError._MSG_TIMED_OUT,
                                  confluent_kafka.KafkaError._TIMED_OUT,
                                  confluent_kafka.KafkaError._TIMED_OUT_QUEUE])
def test_librdkafkas_own_timeouts_are_timeouts(code: int) -> None:
    assert type(as_failure(confluent_kafka.KafkaError(code))) is KafkaTimeout


def test_other_local_errors_are_generic_and_keep_their_name() -> None:
    failure = as_failure(confluent_kafka.KafkaError(confluent_kafka.KafkaError._FATAL))
    assert type(failure) is KafkaFailure and "_FATAL" in str(failure) and failure.code is None


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
