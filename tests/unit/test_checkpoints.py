"""Checkpoints that do not stop the loop: each phase waits for acknowledgements, not the loop.

The Outbox's epochs say when everything sent before a point is settled; the service sends a
checkpoint's snapshots only after the results they reflect are acknowledged and commits only
after the snapshots are, while steps go on. Stand-ins: `LeanProducer` acknowledges at `flush`,
so a test decides when acknowledgements arrive.
"""

from __future__ import annotations

import dataclasses

import pytest
from kafka.future import Future
from reliability_support import Clock, LeanProducer, make_service
from service_support import FakeModel, synthetic_samples
from test_reliability_service import SETTINGS, reference_ids, result_ids, sensor_records

from har_stream.kafka.ports import KafkaFailure, RecordRefused
from har_stream.service.delivery import DeliveryFailed, Outbox

SAMPLES = synthetic_samples(1500, seed=3)
ASYNC = dataclasses.replace(SETTINGS, commit_interval_s=5.0)


class ManualProducer:
    """Keeps every send's future; a test resolves them one by one."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, Future]] = []

    def send(self, topic: str, key: object = None, value: bytes | None = None,
             headers: object = None, partition: object = None) -> Future:
        future = Future()
        self.sent.append((topic, value, future))
        return future

    def serve(self) -> None:
        pass

    def flush(self, timeout_s: float | None = None) -> None:
        pass


def test_an_epoch_is_delivered_once_its_records_are_whatever_comes_after() -> None:
    producer = ManualProducer()
    outbox = Outbox(producer, "dlq")
    outbox.send("out", b"k", b"first")
    first = outbox.mark()
    outbox.send("out", b"k", b"second")
    second = outbox.mark()
    assert not outbox.delivered(first)
    producer.sent[0][2].success(None)
    assert outbox.delivered(first), "the later, unacknowledged record does not count"
    assert not outbox.delivered(second)
    producer.sent[1][2].success(None)
    assert outbox.delivered(second)


def test_a_refused_record_holds_its_epoch_until_its_dead_letter_is_acknowledged() -> None:
    producer = ManualProducer()
    outbox = Outbox(producer, "dlq", max_attempts=2)
    outbox.send("out", b"k", b"too large")
    epoch = outbox.mark()
    for attempt in range(2):
        producer.sent[-1][2].failure(RecordRefused("no", code=10))
        assert not outbox.delivered(epoch), f"attempt {attempt + 1}: re-sent, not settled"
    topic, _value, dead_letter = producer.sent[-1]
    assert topic == "dlq" and len(producer.sent) == 3
    assert not outbox.delivered(epoch)
    dead_letter.success(None)
    assert outbox.delivered(epoch)


def test_a_systemic_refusal_is_raised_by_delivered() -> None:
    producer = ManualProducer()
    outbox = Outbox(producer, "dlq")
    outbox.send("out", b"k", b"v")
    epoch = outbox.mark()
    producer.sent[0][2].failure(KafkaFailure("TopicAuthorizationFailed: denied", code=29))
    with pytest.raises(DeliveryFailed, match="TopicAuthorizationFailed"):
        outbox.delivered(epoch)


def _sent_to(producer: LeanProducer, topic: str) -> int:
    return sum(record.topic == topic for _, record in producer._pending)


def test_a_checkpoint_goes_on_as_acknowledgements_arrive_while_the_loop_steps() -> None:
    service, consumer, producer = make_service(ASYNC, FakeModel())
    records = sensor_records("dev", SAMPLES)  # 30 messages
    consumer.feed(records[:10])
    service.step()
    service._begin_checkpoint()
    assert not service._advance_checkpoint(), "results not acknowledged yet"
    assert _sent_to(producer, "log") == 0, "no snapshot before its results are acknowledged"

    consumer.feed(records[10:20])
    assert service.step() is not None, "the loop goes on while the checkpoint waits"
    producer.flush()  # acknowledges both steps' results
    assert not service._advance_checkpoint(), "snapshots sent, not yet acknowledged"
    assert _sent_to(producer, "log") == 1 and consumer.committed_offsets == {}
    producer.flush()
    assert service._advance_checkpoint()
    assert consumer.committed_offsets == {0: 10}, "the offsets as of the checkpoint's start"
    assert producer.snapshots["dev"].covers_offset == 10

    consumer.feed(records[20:])
    service.step()
    service.checkpoint(final=True)
    assert consumer.committed_offsets == {0: 30}
    assert result_ids(producer.sent["out"]) == reference_ids("dev", SAMPLES)


def test_run_begins_checkpoints_without_waiting_for_the_broker() -> None:
    """The loop's own path: `run` begins a checkpoint when due and only looks at it after
    each step; the final checkpoint, at shutdown, is the one that waits."""
    clock = Clock()
    service, consumer, producer = make_service(ASYNC, FakeModel(), clock=clock)
    consumer.feed(sensor_records("dev", SAMPLES)[:10])
    flushes: list[float | None] = []
    acknowledge = producer.flush
    producer.flush = lambda timeout_s=None: (flushes.append(timeout_s), acknowledge(timeout_s))[1]  # type: ignore[method-assign]
    seen: list[tuple[int, bool, dict[int, int]]] = []

    class StopAfterSteps:
        def __init__(self, steps: int) -> None:
            self.steps = steps

        def is_set(self) -> bool:
            seen.append((len(flushes), service.checkpoints.current is not None,
                         dict(consumer.committed_offsets)))
            clock.now += ASYNC.commit_interval_s  # a checkpoint is due after every step
            self.steps -= 1
            return self.steps < 0

    service.run(StopAfterSteps(3))  # type: ignore[arg-type]
    assert [waited for waited, _, _ in seen] == [0, 0, 0, 0], "the loop never waited"
    assert seen[-1][1:] == (True, {}), "a checkpoint in flight, waiting for acknowledgements"
    assert flushes and consumer.committed_offsets == {0: 10}, "the final checkpoint waited"


def test_a_rebalance_abandons_the_checkpoint_in_flight() -> None:
    service, consumer, producer = make_service(ASYNC, FakeModel())
    records = sensor_records("dev", SAMPLES)
    consumer.feed(records[:10])
    service.step()
    service._begin_checkpoint()
    consumer.rebalance("revoked", list(range(8)))
    consumer.rebalance("assigned", list(range(8)))  # given back, nobody committed
    service.step()
    assert service.checkpoints.current is None, "abandoned: its partitions changed hands meanwhile"
    producer.flush()
    assert consumer.committed_offsets == {} and not producer.snapshots
    service.checkpoint()
    assert consumer.committed_offsets == {0: 10}
    assert producer.snapshots["dev"].covers_offset == 10, "the device was snapshotted again"


def test_an_overdue_checkpoint_holds_the_service_until_it_is_done() -> None:
    clock = Clock()
    service, consumer, producer = make_service(ASYNC, FakeModel(), clock=clock)
    consumer.feed(sensor_records("dev", SAMPLES)[:10])
    service.step()
    service._begin_checkpoint()
    clock.now += ASYNC.produce_timeout_s + 1
    assert not service._advance_checkpoint()
    assert service.held and consumer.paused
    producer.flush()
    service._advance_checkpoint()
    producer.flush()
    assert service._advance_checkpoint()
    assert not service.held and not consumer.paused
    assert consumer.committed_offsets == {0: 10}


def _devices(count: int) -> list:
    records = []
    for d in range(count):
        for r in sensor_records(f"dev-{d}", SAMPLES[:500], partition=d % 2):
            records.append(dataclasses.replace(r, offset=len(records)))
    return records


def test_snapshots_go_out_a_slice_per_step_and_the_commit_waits_for_all() -> None:
    service, consumer, producer = make_service(ASYNC, FakeModel())
    records = _devices(5)
    consumer.feed(records)
    while consumer.queue:
        service.step()
    service._begin_checkpoint()
    producer.flush()  # the results
    assert not service._advance_checkpoint(limit=2)
    assert _sent_to(producer, "log") == 2, "one slice per step"
    assert not service._advance_checkpoint(limit=2) and not service._advance_checkpoint(limit=2)
    assert _sent_to(producer, "log") == 5 and consumer.committed_offsets == {}
    producer.flush()
    assert service._advance_checkpoint(limit=2)
    assert set(producer.snapshots) == {f"dev-{d}" for d in range(5)}
    assert consumer.committed_offsets == {p: 1 + max(r.offset for r in records if r.partition == p)
                                          for p in (0, 1)}


def test_a_rebalance_midway_through_sending_snapshots_takes_them_all_again() -> None:
    service, consumer, producer = make_service(ASYNC, FakeModel())
    consumer.feed(_devices(5))
    while consumer.queue:
        service.step()
    service._begin_checkpoint()
    producer.flush()
    service._advance_checkpoint(limit=2)
    consumer.rebalance("revoked", list(range(8)))
    consumer.rebalance("assigned", list(range(8)))
    service.step()
    assert service.checkpoints.current is None
    assert service.ownership.dirty == {f"dev-{d}" for d in range(5)}, "sent and unsent alike"


def test_snapshots_have_a_producer_of_their_own() -> None:
    """Results never queue behind snapshots; the snapshots still wait for the results."""
    service, consumer, producer = make_service(ASYNC, FakeModel())
    changelog = LeanProducer(ASYNC.topics.changelog_topic)
    service.snapshot_outbox = service.checkpoints.snapshot_outbox = Outbox(changelog, "dlq")
    service.writer.producer.outbox = service.snapshot_outbox
    consumer.feed(sensor_records("dev", SAMPLES)[:10])
    service.step()
    service._begin_checkpoint()
    assert not service._advance_checkpoint()
    changelog.flush()
    assert not service._advance_checkpoint() and changelog.pending() == 0, "results first"
    producer.flush()
    assert not service._advance_checkpoint()
    assert changelog.pending() == 1 and _sent_to(producer, "log") == 0
    changelog.flush()
    assert service._advance_checkpoint() and consumer.committed_offsets == {0: 10}
