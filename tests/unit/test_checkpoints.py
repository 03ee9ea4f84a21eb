"""Checkpoints that do not stop the loop: each phase waits for acknowledgements, not the loop.

The Outbox's epochs say when everything sent before a point is settled; the service sends a
checkpoint's snapshots only after the results they reflect are acknowledged and commits only
after the snapshots are, while steps go on. On the in-memory cluster with
`auto_acknowledge=False`, a test decides when acknowledgements arrive (`acknowledge`).
"""

from __future__ import annotations

import dataclasses

import pytest
from reliability_support import Clock, Harness, Message, sensor_messages
from service_support import synthetic_samples
from test_reliability_service import SETTINGS, reference_ids, result_ids

from har_stream.kafka.drivers.memory import MemoryCluster
from har_stream.kafka.ports import KafkaFailure, RecordRefused
from har_stream.service.delivery import DeliveryFailed, Outbox

SAMPLES = synthetic_samples(1500, seed=3)
ASYNC = dataclasses.replace(SETTINGS, commit_interval_s=5.0)


def held_outbox(max_attempts: int = 3) -> tuple[MemoryCluster, Outbox]:
    """An Outbox on a cluster that acknowledges only when told."""
    cluster = MemoryCluster(auto_acknowledge=False, waits=False)
    cluster.create_topic("out")
    cluster.create_topic("dlq")
    return cluster, Outbox(cluster.producer(), "dlq", max_attempts=max_attempts)


def answer(cluster: MemoryCluster, outbox: Outbox, n: int | None = 1) -> None:
    """The cluster answers the oldest `n` records; their callbacks run."""
    cluster.acknowledge(n)
    outbox.serve()


def test_an_epoch_is_delivered_once_its_records_are_whatever_comes_after() -> None:
    cluster, outbox = held_outbox()
    outbox.send("out", b"k", b"first")
    first = outbox.mark()
    outbox.send("out", b"k", b"second")
    second = outbox.mark()
    assert not outbox.delivered(first)
    answer(cluster, outbox)
    assert outbox.delivered(first), "the later, unacknowledged record does not count"
    assert not outbox.delivered(second)
    answer(cluster, outbox)
    assert outbox.delivered(second)


def test_a_refused_record_holds_its_epoch_until_its_dead_letter_is_acknowledged() -> None:
    cluster, outbox = held_outbox(max_attempts=2)
    refusals: list[str] = []

    def refuse(topic: str, *_: object) -> RecordRefused | None:
        if topic != "out":
            return None
        refusals.append(topic)
        return RecordRefused("no", code=10)

    cluster.refuse = refuse
    outbox.send("out", b"k", b"too large")
    epoch = outbox.mark()
    for attempt in range(2):
        answer(cluster, outbox)
        assert not outbox.delivered(epoch), f"attempt {attempt + 1}: re-sent, not settled"
    assert refusals == ["out", "out"] and cluster.pending() == cluster.pending("dlq") == 1
    assert not outbox.delivered(epoch)
    answer(cluster, outbox)
    assert outbox.delivered(epoch) and [r.value for r in cluster.records("dlq")] == [
        b"too large"]


def test_a_systemic_refusal_is_raised_by_delivered() -> None:
    cluster, outbox = held_outbox()
    cluster.refuse = lambda *_: KafkaFailure("TopicAuthorizationFailed: denied", code=29)
    outbox.send("out", b"k", b"v")
    epoch = outbox.mark()
    answer(cluster, outbox)
    with pytest.raises(DeliveryFailed, match="TopicAuthorizationFailed"):
        outbox.delivered(epoch)


def test_a_checkpoint_goes_on_as_acknowledgements_arrive_while_the_loop_steps() -> None:
    h = Harness(ASYNC, auto_acknowledge=False)
    messages = sensor_messages("dev", SAMPLES)  # 30 messages
    h.feed(messages[:10])
    h.service.step()
    h.service._begin_checkpoint()
    assert not h.service._advance_checkpoint(), "results not acknowledged yet"
    assert h.cluster.pending("log") == 0, "no snapshot before its results are acknowledged"

    h.feed(messages[10:20])
    assert h.service.step() is not None, "the loop goes on while the checkpoint waits"
    h.acknowledge()  # both steps' results
    assert not h.service._advance_checkpoint(), "snapshots sent, not yet acknowledged"
    assert h.cluster.pending("log") == 1 and h.committed() == {}
    h.acknowledge()
    assert h.service._advance_checkpoint()
    assert h.committed() == {0: 10}, "the offsets as of the checkpoint's start"
    assert h.snapshots()["dev"].covers_offset == 10

    h.feed(messages[20:])
    h.service.step()
    h.cluster.auto_acknowledge = True
    h.service.checkpoint(final=True)
    assert h.committed() == {0: 30}
    assert result_ids(h.sent("out")) == reference_ids("dev", SAMPLES)


def test_run_begins_checkpoints_without_waiting_for_the_broker() -> None:
    """The loop's own path: `run` begins a checkpoint when due and only looks at it after
    each step; the final checkpoint, at shutdown, is the one that waits."""
    clock = Clock()
    h = Harness(ASYNC, clock=clock, auto_acknowledge=False)
    h.feed(sensor_messages("dev", SAMPLES)[:10])
    flushes: list[float | None] = []
    for producer in (h.producer, h.snapshot_producer):  # noted, then done as the driver does
        flush = producer.flush
        producer.flush = lambda timeout_s=None, flush=flush: (  # type: ignore[method-assign]
            flushes.append(timeout_s), flush(timeout_s))[1]
    seen: list[tuple[int, bool, dict[int, int], int]] = []

    class StopAfterSteps:
        def __init__(self, steps: int) -> None:
            self.steps = steps

        def is_set(self) -> bool:
            seen.append((len(flushes), h.service.checkpoints.current is not None,
                         h.committed(), h.cluster.pending("out")))
            clock.now += ASYNC.commit_interval_s  # a checkpoint is due after every step
            self.steps -= 1
            if self.steps < 0:
                h.cluster.auto_acknowledge = True  # the broker answers the final one
            return self.steps < 0

    h.service.run(StopAfterSteps(3))  # type: ignore[arg-type]
    assert [waited for waited, _, _, _ in seen] == [0, 0, 0, 0], "the loop never waited"
    assert seen[-1][1:3] == (True, {}), "a checkpoint in flight, waiting for acknowledgements"
    assert seen[-1][3] > 0 and not h.service.held, "its results unanswered, and not held"
    assert flushes and h.committed() == {0: 10}, "the final checkpoint waited"


def test_a_rebalance_abandons_the_checkpoint_in_flight() -> None:
    h = Harness(ASYNC, auto_acknowledge=False)
    h.feed(sensor_messages("dev", SAMPLES)[:10])
    h.service.step()
    h.service._begin_checkpoint()
    h.rebalance()  # given back, nobody committed
    h.service.step()
    assert h.service.checkpoints.current is None, "abandoned: its partitions changed hands"
    h.acknowledge()
    assert h.committed() == {} and not h.snapshots()
    h.cluster.auto_acknowledge = True
    h.service.checkpoint()
    assert h.committed() == {0: 10}
    assert h.snapshots()["dev"].covers_offset == 10, "the device was snapshotted again"


def test_an_overdue_checkpoint_holds_the_service_until_it_is_done() -> None:
    clock = Clock()
    h = Harness(ASYNC, clock=clock, auto_acknowledge=False)
    h.feed(sensor_messages("dev", SAMPLES)[:10])
    h.service.step()
    h.service._begin_checkpoint()
    clock.now += ASYNC.produce_timeout_s + 1
    assert not h.service._advance_checkpoint()
    assert h.service.held and h.consumer.paused == h.consumer.assignment() != set()
    h.acknowledge()
    h.service._advance_checkpoint()
    h.acknowledge()
    assert h.service._advance_checkpoint()
    assert not h.service.held and not h.consumer.paused
    assert h.committed() == {0: 10}


def _devices(count: int) -> list[Message]:
    return [m for d in range(count)
            for m in sensor_messages(f"dev-{d}", SAMPLES[:500], partition=d % 2)]


def test_snapshots_go_out_a_slice_per_step_and_the_commit_waits_for_all() -> None:
    h = Harness(ASYNC, auto_acknowledge=False)
    placed = h.feed(_devices(5))
    while h.unread():
        h.service.step()
    h.service._begin_checkpoint()
    h.acknowledge()  # the results
    assert not h.service._advance_checkpoint(limit=2)
    assert h.cluster.pending("log") == 2, "one slice per step"
    assert not h.service._advance_checkpoint(limit=2)
    assert not h.service._advance_checkpoint(limit=2)
    assert h.cluster.pending("log") == 5 and h.committed() == {}
    h.acknowledge()
    assert h.service._advance_checkpoint(limit=2)
    assert set(h.snapshots()) == {f"dev-{d}" for d in range(5)}
    assert h.committed() == {p: 1 + max(o for q, o in placed if q == p) for p in (0, 1)}


def test_a_rebalance_midway_through_sending_snapshots_takes_them_all_again() -> None:
    h = Harness(ASYNC, auto_acknowledge=False)
    h.feed(_devices(5))
    while h.unread():
        h.service.step()
    h.service._begin_checkpoint()
    h.acknowledge()
    h.service._advance_checkpoint(limit=2)
    h.rebalance()
    h.service.step()
    assert h.service.checkpoints.current is None
    assert h.service.ownership.dirty == {f"dev-{d}" for d in range(5)}, "sent and unsent alike"


def test_snapshots_have_a_producer_of_their_own() -> None:
    """Results never queue behind snapshots; the snapshots still wait for the results."""
    h = Harness(ASYNC, auto_acknowledge=False)
    h.feed(sensor_messages("dev", SAMPLES)[:10])
    h.service.step()
    h.service._begin_checkpoint()
    assert not h.service._advance_checkpoint()
    assert h.acknowledge(producer=h.snapshot_producer) == 0, "nothing of the results there"
    assert not h.service._advance_checkpoint() and h.cluster.pending("log") == 0, "results first"
    assert h.acknowledge(producer=h.producer) > 0
    assert not h.service._advance_checkpoint()
    assert h.cluster.pending("log") == 1
    assert h.acknowledge(producer=h.producer) == 0, "the snapshot is not the results' producer's"
    assert h.acknowledge(producer=h.snapshot_producer) == 1
    assert h.service._advance_checkpoint() and h.committed() == {0: 10}
