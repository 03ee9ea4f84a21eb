"""The service loop on the in-memory Kafka driver: ordering of a checkpoint, rebalances, guards.

What the cluster sees, in order (records sent and acknowledged, the group's commits), pins
down the protocol that makes the delivery guarantee hold (results acknowledged before
snapshots, snapshots before the commit); group members joining, leaving and being expelled
drive the partition bookkeeping; restores read the real changelog.
"""

from __future__ import annotations

import numpy as np
import pytest
from reliability_support import Clock, Harness, Message, sensor_messages
from service_support import FakeModel, batches_of, synthetic_samples

from har_stream.core import codec
from har_stream.core.recognizer import Recognizer
from har_stream.core.records import window_id
from har_stream.kafka.ports import KafkaFailure, Partition
from har_stream.service.changelog import HEADER_COVERS_OFFSET
from har_stream.service.loop import ServiceError
from har_stream.service.settings import Settings, TopicSettings

TOPICS = TopicSettings(sensor_topic="in", dlq_topic="dlq", activity_topic="out",
                       counts_topic="counts", changelog_topic="log")
SETTINGS = Settings(topics=TOPICS, commit_interval_s=0, idle_ttl_s=60, eviction_interval_s=1)


def reference(device_id: str, samples: np.ndarray) -> dict[str, np.ndarray]:
    """Window id -> probabilities of an uninterrupted run (one message: the offline path)."""
    recognizer = Recognizer(FakeModel())
    out = recognizer.process(batches_of(device_id, samples, len(samples)))
    return {r.window_id: np.array(list(r.probabilities.values())) for r in out.results}


def published(h: Harness, start: int = 0, end: int | None = None) -> dict[str, np.ndarray]:
    """The results in the activity topic (its `start`-th to `end`-th), once the broker has
    acknowledged every record sent."""
    h.acknowledge()
    results = [codec.decode_result(r.value) for r in h.sent("out")[start:end]]
    return {r.window_id: np.array(list(r.probabilities.values())) for r in results}


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-6)


SAMPLES = synthetic_samples(1000, seed=5)
MESSAGES = sensor_messages("dev", SAMPLES)  # 20 messages of 50 samples on partition 0


def test_a_checkpoint_acknowledges_results_then_snapshots_then_commits() -> None:
    h = Harness(SETTINGS, partitions=1)
    journal: list[tuple[str, str, int, dict[int, int]]] = []  # what the cluster sees, in order

    def note(event: str, topic: str) -> None:
        others = h.cluster.pending() - h.cluster.pending(TOPICS.changelog_topic)
        journal.append((event, topic, others, h.committed()))

    h.cluster.refuse_at_send = lambda topic, *_: note("send", topic)
    h.cluster.refuse = lambda topic, *_: note("ack", topic)
    h.feed(MESSAGES[:10])
    h.step_all()
    journal.clear()
    h.service.checkpoint()
    events = [(event, topic) for event, topic, _, _ in journal]
    snapshot_sent = events.index(("send", "log"))
    assert events[snapshot_sent:] == [("send", "log"), ("ack", "log")], journal
    assert events[:snapshot_sent] and all(e == "ack" and t != "log"
                                          for e, t in events[:snapshot_sent]), journal
    assert journal[snapshot_sent][2] == 0, "every result acknowledged before the snapshot"
    assert all(committed == {} for *_, committed in journal), "no commit before the snapshot"
    (snapshot,) = h.sent("log")
    assert (snapshot.key, snapshot.partition) == (b"dev", 0)  # changelog partition = input's
    assert dict(snapshot.headers or [])[HEADER_COVERS_OFFSET] == b"10"
    assert h.committed() == {0: 10}


def test_nothing_is_committed_when_the_broker_rejects_output() -> None:
    h = Harness(SETTINGS, auto_acknowledge=False)
    h.feed(MESSAGES[:10])
    h.step_all()
    assert h.cluster.pending("out")
    h.cluster.refuse = lambda *_: KafkaFailure("broker says no")
    h.cluster.auto_acknowledge = True
    with pytest.raises(ServiceError, match="rejected results"):
        h.service.checkpoint()
    assert h.committed() == {} and h.cluster.pending("log") == 0 and not h.sent("log")


def test_restored_state_continues_exactly_and_covered_replays_are_skipped() -> None:
    """The snapshot is 4000 samples ahead of the commit: more than the pipeline's own
    duplicate detection absorbs, so only the changelog's covered offset avoids a reset."""
    samples = synthetic_samples(6000, seed=6)
    messages = sensor_messages("dev", samples)  # 120 messages
    first = Harness(SETTINGS, partitions=1)
    first.feed(messages[:20])
    first.step_all()
    first.service.checkpoint()  # snapshot covers offsets < 20, commit 20
    first.feed(messages[20:100])
    first.step_all()
    first.service.checkpoints.commit = lambda offsets: None  # the crash comes before it
    first.service.checkpoint()  # snapshot covering < 100 written, then a crash before the commit
    assert first.committed() == {0: 20}
    first.cluster.expel(first.consumer)  # the crashed member misses its deadline
    before = len(first.sent("out"))

    second = Harness(SETTINGS, cluster=first.cluster)  # resumes from the commit: replays
    second.feed(messages[100:])
    second.step_all()
    assert second.reader.partition_reads == [[0]]
    assert not set(published(first, 0, before)) & set(published(second, before)), (
        "replays were skipped")
    assert_same(published(second), reference("dev", samples))


def test_a_partition_given_back_keeps_its_state_unless_someone_committed() -> None:
    h = Harness(SETTINGS, partitions=2)
    messages = sensor_messages("dev", SAMPLES, partition=1)
    h.feed(messages[:6])
    h.step_all()
    h.service.checkpoint()
    h.rebalance()  # revoked [0, 1], assigned [0, 1]
    h.feed(messages[6:10])
    h.step_all()
    assert h.reader.partition_reads == [[0, 1]], "no second restore: nobody else committed"
    h.service.checkpoint()
    assert h.committed() == {1: 10}

    other = h.cluster.consumer(SETTINGS.group_id)
    other.subscribe(["in"])  # another member takes partition 1...
    h.feed(messages[10:15])
    other.poll()
    other.commit({Partition("in", 1): 15})  # ...processes up to 15 meanwhile...
    other.close()  # ...and leaves: partition 1 comes back, with a commit not ours
    h.step_all()
    assert h.reader.partition_reads == [[0, 1], [1]]
    assert h.service.ownership.owned == {0, 1}


def test_kept_state_skips_the_replay_from_the_committed_offset() -> None:
    """After an eager rebalance gives the partition back, the consumer restarts at the
    committed offset; what the kept state already holds is skipped, not applied twice."""
    samples = synthetic_samples(6000, seed=8)
    messages = sensor_messages("dev", samples)  # 120 messages
    h = Harness(SETTINGS, partitions=1)
    h.feed(messages[:6])
    h.step_all()
    h.service.checkpoint()  # commit 6
    h.feed(messages[6:90])
    h.step_all()  # 84 messages (4200 samples) processed, not committed
    h.rebalance()  # kept, and the consumer replays from offset 6
    h.feed(messages[90:])
    h.step_all()
    assert h.reader.partition_reads == [[0]]
    assert published(h) and h.consumer.committed(Partition("in", 0)) == 6
    windows = [codec.decode_result(r.value).window_id for r in h.sent("out")]
    assert len(windows) == len(set(windows)), "nothing was applied twice"
    assert_same(published(h), reference("dev", samples))


def test_lost_partitions_drop_their_devices() -> None:
    h = Harness(SETTINGS, partitions=2)
    h.feed(sensor_messages("other", SAMPLES, partition=0)[:5]
           + sensor_messages("dev", SAMPLES, partition=1)[:5])
    h.step_all()
    assert sorted(h.service.registry.device_ids()) == ["dev", "other"]
    h.cluster.expel(h.consumer)  # past its poll deadline: the group moves on without it
    h.cluster.consumer(SETTINGS.group_id).subscribe(["in"])  # takes partition 0
    h.service.step()  # lost [0, 1]; joins again and gets partition 1, replayed from the start
    assert h.service.registry.device_ids() == ["dev"] and h.service.ownership.owned == {1}
    assert h.reader.partition_reads[-1] == [1], "the partition it got is restored afresh"


def test_rejected_messages_become_dead_letters_with_their_bytes_and_headers() -> None:
    h = Harness(SETTINGS)
    h.feed([*MESSAGES, Message(b"dev", b"{oops", 0, [("trace", b"42")])])
    h.step_all()
    h.acknowledge()
    (letter,) = h.sent("dlq")
    headers = letter.headers or []
    assert (letter.key, letter.value) == (b"dev", b"{oops")
    assert headers[0] == ("trace", b"42")
    assert dict(headers)[codec.HEADER_REASON] == b"not_json"
    assert dict(headers)[codec.HEADER_SOURCE_OFFSET] == b"20"
    assert_same(published(h), reference("dev", SAMPLES))


def test_idle_devices_are_evicted_and_come_back_from_their_snapshot() -> None:
    clock = Clock()
    h = Harness(SETTINGS, clock=clock, partitions=1)
    h.feed(MESSAGES[:9])
    h.step_all()
    h.service.checkpoint()
    clock.now += 120  # past the 60 s TTL
    h.service.checkpoint()
    assert len(h.service.registry) == 0 and "dev" in h.service.ownership.evicted
    h.feed(MESSAGES[9:])
    h.step_all()
    assert h.reader.record_reads == [{"dev": (0, 0)}]
    assert_same(published(h), reference("dev", SAMPLES))


def test_counts_count_every_window_once() -> None:
    h = Harness(SETTINGS)
    h.feed(MESSAGES)
    h.step_all()
    h.acknowledge()
    last = codec.decode_counts(h.sent("counts")[-1].value)
    assert sum(last.windows.values()) == len(reference("dev", SAMPLES))
    assert window_id("dev", last.last_seq) in reference("dev", SAMPLES)


def test_a_poll_mixing_a_continuing_and_a_new_device_labels_every_window_right() -> None:
    """Regression: with equal message lengths, a continuing device completing two windows
    and a new device completing none formed one group whose windows got both names."""
    old, new = synthetic_samples(1000, seed=21), synthetic_samples(1000, seed=22)
    old_messages = sensor_messages("old", old, per_message=25)
    new_messages = sensor_messages("new", new, partition=1, per_message=25)
    h = Harness(SETTINGS)
    h.feed(old_messages[:35])
    h.step_all()
    h.feed(old_messages[35:39] + new_messages[:4])
    h.service.step()
    assert h.unread() == 0, "one poll with both devices"
    h.feed(old_messages[39:] + new_messages[4:])
    h.step_all()
    assert_same(published(h), reference("old", old) | reference("new", new))
