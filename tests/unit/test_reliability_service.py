"""The loop under producer failures, outages and slow models, on the in-memory Kafka driver.

Pinned down here without a broker: a poison output record is retried a bounded number of
times, then dead-lettered, and the commit goes on; a systemic refusal stops the service
without committing; an unreachable broker holds commits and pauses consumption instead of
exiting; the broker gauge and the logs follow the connection; the poll size adapts so that a
step fits the time budget derived from `max_poll_interval_ms`; a sensor topic created again
stops the service before any of its messages is applied.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import pytest
from reliability_support import Clock, Harness, Message, sensor_messages
from service_support import FakeModel, batches_of, synthetic_samples

from har_stream.core import codec
from har_stream.core.recognizer import Recognizer
from har_stream.kafka.drivers.memory import MemoryCluster
from har_stream.kafka.ports import Headers, KafkaFailure, Record, RecordRefused
from har_stream.service import metrics
from har_stream.service.delivery import (
    HEADER_TRUNCATED,
    MAX_DEAD_LETTER_VALUE,
    UNDELIVERABLE,
    bounded_dead_letter,
)
from har_stream.service.health import BrokerWatch
from har_stream.service.loop import ServiceError
from har_stream.service.pacing import WorkBudget
from har_stream.service.settings import KafkaSettings, Settings, TopicSettings

TOPICS = TopicSettings(sensor_topic="in", dlq_topic="dlq", activity_topic="out",
                       counts_topic="counts", changelog_topic="log")
SETTINGS = Settings(topics=TOPICS, commit_interval_s=0, idle_ttl_s=0, metrics_address="")


def reference_ids(device_id: str, samples: np.ndarray) -> set[str]:
    out = Recognizer(FakeModel()).process(batches_of(device_id, samples, len(samples)))
    return {r.window_id for r in out.results}


def result_ids(sent: list[Record]) -> set[str]:
    return {codec.decode_result(r.value).window_id for r in sent}


GOOD, POISON = synthetic_samples(1000, seed=1), synthetic_samples(1000, seed=2)


def test_a_poison_result_is_retried_a_bounded_number_of_times_then_dead_lettered() -> None:
    h = Harness(SETTINGS)
    refusals: list[bytes | None] = []

    def refuse(topic: str, key: bytes | None, value: bytes | None, headers: Headers,
               partition: int) -> KafkaFailure | None:
        if topic == "out" and key == b"poison":
            refusals.append(value)
            return RecordRefused("MessageSizeTooLarge: MESSAGE_TOO_LARGE for this topic")
        return None

    h.cluster.refuse = refuse
    h.feed(sensor_messages("good", GOOD) + sensor_messages("poison", POISON, partition=1))
    h.drain()
    poison_windows = reference_ids("poison", POISON)
    assert len(refusals) == SETTINGS.max_produce_attempts * len(poison_windows)
    assert result_ids(h.sent("out")) == reference_ids("good", GOOD)
    letters = h.sent("dlq")
    assert len(letters) == len(poison_windows)
    for letter in letters:
        headers = dict(letter.headers or [])
        assert headers[codec.HEADER_REASON] == UNDELIVERABLE.encode()
        assert headers[codec.HEADER_SOURCE_TOPIC] == b"out"
        assert b"MessageSizeTooLarge" in headers[codec.HEADER_DETAIL]
        assert letter.key == b"poison"
    assert {codec.decode_result(r.value).window_id for r in letters} == poison_windows
    assert h.committed() == {0: 20, 1: 20}, "the partition was not blocked"


def test_a_record_refused_by_send_itself_is_dead_lettered_too() -> None:
    h = Harness(SETTINGS)
    h.cluster.refuse_at_send = lambda topic, *_: (
        RecordRefused("MessageSizeTooLarge: larger than max_request_size")
        if topic == "counts" else None)
    h.feed(sensor_messages("good", GOOD))
    h.drain()
    reasons = {dict(r.headers or [])[codec.HEADER_REASON] for r in h.sent("dlq")}
    assert reasons == {UNDELIVERABLE.encode()} and h.sent("dlq")
    assert result_ids(h.sent("out")) == reference_ids("good", GOOD)
    assert h.committed() == {0: 20}


def test_a_dead_letter_the_broker_refuses_is_stripped_then_dropped_without_looping(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(SETTINGS)
    h.cluster.refuse = lambda topic, key, value, *_: (
        RecordRefused("MessageSizeTooLarge: too large") if topic == "dlq" and value else None)
    h.feed([Message(b"dev", b"{oops" + b" " * 1000), *sensor_messages("dev", GOOD)])
    h.drain()
    (letter,) = h.sent("dlq")  # the stripped copy: headers only
    assert letter.value == b"" and letter.key is None
    assert dict(letter.headers or [])[codec.HEADER_REASON] == b"not_json"
    assert h.committed() == {0: 21}


def test_a_systemic_refusal_stops_the_service_without_committing() -> None:
    h = Harness(SETTINGS)
    h.feed(sensor_messages("dev", GOOD))
    h.cluster.refuse = lambda *_: KafkaFailure("TopicAuthorizationFailed: not allowed", code=29)
    h.service.step()
    with pytest.raises(ServiceError, match="TopicAuthorizationFailed"):
        h.service.checkpoint()
    assert h.committed() == {}


def test_dead_letters_are_bounded_copies_and_ignore_forged_error_headers() -> None:
    huge = b"x" * (MAX_DEAD_LETTER_VALUE + 10)
    key, value, headers = bounded_dead_letter(
        b"k" * 5000, huge, [("origin", b"fw-1"), (codec.HEADER_REASON, b"forged"),
                            ("nullable", None)],  # type: ignore[list-item]
        [(codec.HEADER_REASON, b"message_too_large")])
    assert len(value or b"") == MAX_DEAD_LETTER_VALUE and len(key or b"") == 1024
    assert [h for h in headers if h[0] == codec.HEADER_REASON] == [
        (codec.HEADER_REASON, b"message_too_large")]
    assert ("origin", b"fw-1") in headers and ("nullable", b"") in headers
    assert dict(headers)[HEADER_TRUNCATED] == f"key=5000,value={len(huge)}".encode()
    assert bounded_dead_letter(None, None, [], [])[1] == b""  # a producer needs key or value


def test_records_without_key_and_value_or_with_null_headers_are_dead_lettered() -> None:
    h = Harness(SETTINGS)
    h.feed([Message(None, None, 0, [("h", None)]),  # type: ignore[list-item]  # Kafka allows it
            Message(b"\xff\xfe", b"\x00" * 10)])
    h.drain()
    assert [dict(r.headers or [])[codec.HEADER_REASON] for r in h.sent("dlq")] == [
        b"not_json", b"not_json"]
    assert h.committed() == {0: 2}


def test_an_unreachable_broker_holds_commits_and_pauses_instead_of_exiting(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(SETTINGS)
    messages = sensor_messages("dev", GOOD)
    h.feed(messages[:10])
    h.service.step()
    h.service.checkpoint()
    assert h.committed() == {0: 10}
    h.feed(messages[10:15])
    h.service.step()
    h.cluster.reachable = False
    with caplog.at_level(logging.WARNING, logger="har_stream.service.loop"):
        for _ in range(3):
            h.service.checkpoint()  # no exception: the service waits
            assert h.service.step() is None
    assert h.service.held and h.consumer.paused == h.consumer.assignment() != set()
    assert h.committed() == {0: 10}, "nothing committed past unacknowledged output"
    assert sum("holding commits" in r.message for r in caplog.records) == 1, "said once"
    h.cluster.reachable = True
    h.feed(messages[15:])
    assert h.service.step() is None, "paused: no new work while output waits"
    h.drain()
    assert not h.service.held and not h.consumer.paused
    assert h.committed() == {0: 20}
    assert result_ids(h.sent("out")) == reference_ids("dev", GOOD)


def test_stopping_while_output_is_unacknowledged_fails_without_committing() -> None:
    h = Harness(SETTINGS)
    h.feed(sensor_messages("dev", GOOD))
    h.service.step()
    h.cluster.reachable = False
    with pytest.raises(ServiceError, match="not acknowledged"):
        h.service.checkpoint(final=True)
    assert h.committed() == {}


def test_the_broker_gauge_and_logs_follow_the_connection(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    cluster = MemoryCluster(waits=False)
    client = cluster.consumer("group")
    watch = BrokerWatch(client, "127.0.0.1:9", clock=clock, every_s=0.5, grace_s=1.0,
                        remind_s=60.0)
    gauge = lambda: metrics.REGISTRY.get_sample_value("har_broker_connected")  # noqa: E731
    with caplog.at_level(logging.INFO, logger="har_stream.service.health"):
        assert watch.check() and gauge() == 1
        cluster.reachable = False
        for _ in range(200):  # 100 s of checks every 0.5 s
            clock.now += 0.5
            watch.check()
        assert not watch.up and gauge() == 0
        cluster.reachable = True  # a connection being attempted counts too...
        clock.now += 0.5
        assert not watch.check() and gauge() == 0, "...so one sighting is not enough"
        cluster.reachable = False  # refused: closed again
        clock.now += 0.5
        assert not watch.check()
        cluster.reachable = True
        clock.now += 0.5
        assert not watch.check()
        clock.now += 0.5
        assert watch.check() and gauge() == 1, "seen on two checks 0.5 s apart: back"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("lost the connection to Kafka at 127.0.0.1:9" in m for m in messages) == 1
    assert sum("still no connection" in m for m in messages) == 1  # one reminder a minute
    assert any("again after 100.5 s" in m for m in messages)  # down from 1 s (grace) to 101.5 s


def test_a_poll_takes_only_what_fits_in_the_time_budget() -> None:
    budget = WorkBudget(max_records=500, budget_s=1.0, first=16)
    assert budget.limit == 16, "nothing measured yet: a small first poll"
    assert budget.observe(16, 0.016) == 500  # 1 ms per message: the configured maximum
    assert budget.observe(100, 2.0) == 50  # 20 ms per message: at once
    assert budget.observe(50, 0.05) < 100, "cheaper again: relaxes gradually"
    for _ in range(50):
        budget.observe(50, 0.05)
    assert budget.limit == 500


class SlowModel(FakeModel):
    """FakeModel that takes `delay_s` per window."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def predict(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(self.delay_s * len(windows))
        return super().predict(windows, state)


def test_with_a_slow_model_every_step_stays_within_the_work_budget() -> None:
    """5 ms per window, 128-sample messages (2 windows each): 500 messages would take 5 s,
    but the budget of 0.25 s keeps every step near it."""
    settings = dataclasses.replace(SETTINGS, max_poll_interval_ms=3500, produce_timeout_s=1.0,
                                   restore_timeout_s=1.0, session_timeout_ms=3000,
                                   heartbeat_interval_ms=1000)
    assert settings.work_budget_s == pytest.approx(0.25)
    h = Harness(settings, SlowModel(0.005))
    for d in range(20):
        h.feed(sensor_messages(f"dev-{d}", synthetic_samples(1280, d), partition=d % 8,
                               per_message=128))
    durations = []
    while h.unread():
        started = time.perf_counter()
        h.service.step()
        durations.append(time.perf_counter() - started)
    # without the budget one step would take 5 s (20 budgets); 4 leaves room for a busy CI
    assert max(durations[2:]) < 4 * settings.work_budget_s, durations
    assert max(most for _, most in h.polls) < 100, "the poll size came down"


def test_settings_refuse_a_poll_interval_that_the_checkpoint_alone_can_exceed() -> None:
    with pytest.raises(ValueError, match="rebalance storm"):
        Settings(max_poll_interval_ms=60_000)  # 2 x 30 s produce + 120 s restore
    settings = Settings(max_poll_interval_ms=5000, produce_timeout_s=1, session_timeout_ms=5000,
                        heartbeat_interval_ms=1000, restore_timeout_s=2)
    assert settings.work_budget_s == pytest.approx(0.5)


def test_settings_refuse_a_poll_interval_below_the_session_timeout_for_librdkafka() -> None:
    """librdkafka would refuse it only when the consumer is built, after the topics are."""
    with pytest.raises(ValueError, match="at least HAR_SESSION_TIMEOUT_MS"):
        Settings(max_poll_interval_ms=5000, produce_timeout_s=1, restore_timeout_s=2)
    kafka_python = KafkaSettings(consumer_client="kafka-python")
    assert Settings(kafka=kafka_python, max_poll_interval_ms=5000, produce_timeout_s=1,
                    restore_timeout_s=2).session_timeout_ms == 10000


def _recreate(cluster: MemoryCluster, topic: str, partitions: int = 8) -> None:
    """Delete `topic` and create it again: a new topic id, offsets from 0."""
    cluster.admin().delete_topics([topic])
    cluster.create_topic(topic, partitions)


def test_a_recreated_sensor_topic_stops_the_service_before_its_messages_are_applied() -> None:
    h = Harness(SETTINGS)
    h.feed(sensor_messages("dev", GOOD[:500]))
    h.drain()
    before = result_ids(h.sent("out"))
    assert before, "the first topic's messages are processed"
    _recreate(h.cluster, "in")
    h.consumer.topics()  # the client's metadata refresh learns the new topic's id
    assert h.feed(sensor_messages("dev", GOOD[500:]))[0] == (0, 0), "offsets from 0 again"
    with pytest.raises(ServiceError, match="was recreated"):
        h.service.step()
    assert result_ids(h.sent("out")) == before, "nothing of the new topic applied"


def test_after_an_outage_the_topic_is_checked_on_fresh_metadata_before_the_first_message(
        ) -> None:
    clock = Clock()
    h = Harness(SETTINGS, clock=clock)
    h.feed(sensor_messages("dev", GOOD[:500]))
    h.drain()
    before = result_ids(h.sent("out"))
    h.cluster.reachable = False  # the broker goes away...
    for _ in range(4):
        clock.now += 0.6
        h.service.step()
    assert not h.service.watch.up
    h.cluster.reachable = True  # ...and comes back with the topic created anew; the
    _recreate(h.cluster, "in")  # client's cached metadata still has the old id
    assert h.consumer.topic_id("in") != h.cluster.topic("in").id
    h.feed(sensor_messages("dev", GOOD[500:]))
    with pytest.raises(ServiceError, match="was recreated"):
        h.service.step()
    assert result_ids(h.sent("out")) == before
