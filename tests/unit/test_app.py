"""The service loop with in-memory Kafka fakes: ordering of a checkpoint, rebalances, guards.

The fakes record every call, so these tests pin down the protocol that makes the delivery
guarantee hold (results acknowledged before snapshots, snapshots before the commit) and the
partition bookkeeping, without a broker.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace as dataclasses_replace
from typing import Any

import numpy as np
import pytest
from kafka.future import Future
from reliability_support import TP, Metadata, Record
from service_support import FakeModel, batches_of, synthetic_samples

from har_stream.core import codec
from har_stream.core.recognizer import Recognizer
from har_stream.core.records import window_id
from har_stream.service.changelog import HEADER_COVERS_OFFSET, StoredState
from har_stream.service.loop import Service, ServiceError
from har_stream.service.settings import Settings, TopicSettings

TOPICS = TopicSettings(sensor_topic="in", dlq_topic="dlq", activity_topic="out",
                       counts_topic="counts", changelog_topic="log")
SETTINGS = Settings(topics=TOPICS, commit_interval_s=0, idle_ttl_s=60, eviction_interval_s=1)


class FakeProducer:
    """Keeps sends pending until flush, then acknowledges (or fails) them in order."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.sent: list[tuple[str, Any, Any, list, int | None]] = []
        self._pending: list[tuple[Future, str, int]] = []
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)
        self.fail: Exception | None = None

    def send(self, topic: str, key: Any = None, value: Any = None, headers: Any = None,
             partition: int | None = None) -> Future:
        self.journal.append(f"send {topic}")
        self.sent.append((topic, key, value, headers or [], partition))
        future = Future()
        self._pending.append((future, topic, 0 if partition is None else partition))
        return future

    def serve(self) -> None:
        pass

    def flush(self, timeout_s: float | None = None) -> None:
        self.journal.append("flush")
        for future, topic, partition in self._pending:
            if self.fail is not None:
                future.failure(self.fail)
            else:
                offset = self._offsets[topic, partition]
                self._offsets[topic, partition] += 1
                future.success(Metadata(topic, partition, offset))
        self._pending.clear()

    def to(self, topic: str) -> list[tuple[str, Any, Any, list, int | None]]:
        return [s for s in self.sent if s[0] == topic]


class FakeConsumer:
    """Returns scripted polls; a script step may first fire rebalance events."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.script: list[tuple[list[tuple[str, list[int]]], list[Record]]] = []
        self.listener: Any = None
        self.committed_offsets: dict[int, int] = {}

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        if not self.script:
            return {}
        events, records = self.script.pop(0)
        for kind, partitions in events:
            getattr(self.listener, f"on_partitions_{kind}")([TP("in", p) for p in partitions])
        polled: dict[TP, list[Record]] = defaultdict(list)
        for record in records:
            polled[TP(record.topic, record.partition)].append(record)
        return dict(polled)

    def committed(self, tp: Any) -> int | None:
        return self.committed_offsets.get(tp.partition)

    def commit(self, offsets: dict, timeout_s: float = 30.0) -> None:
        self.journal.append("commit")
        for tp, offset in offsets.items():
            self.committed_offsets[tp.partition] = offset

    def highwater(self, tp: Any) -> None:
        return None

    def connected(self) -> None:
        return None  # cannot tell: the broker watch keeps its last answer

    def topic_id(self, topic: str) -> None:
        return None


class FakeReader:
    """A changelog made of the snapshots some producer wrote (last per key wins)."""

    def __init__(self) -> None:
        self.records: list[StoredState] = []
        self.partition_reads: list[list[int]] = []
        self.record_reads: list[dict] = []

    def load(self, producer: FakeProducer) -> None:
        for offset, (_, key, value, headers, partition) in enumerate(producer.to("log")):
            covers = int(dict(headers)[HEADER_COVERS_OFFSET])
            self.records.append(StoredState(key.decode(), partition or 0, value, covers,
                                            offset, 1_700_000_000_000))

    def read_partitions(self, partitions: list[int]) -> dict[str, StoredState]:
        self.partition_reads.append(sorted(partitions))
        return {s.device_id: s for s in self.records if s.partition in partitions}

    def read_records(self, locations: dict) -> dict[str, StoredState]:
        self.record_reads.append(dict(locations))
        found = {}
        for device_id, (partition, offset) in locations.items():
            found.update({s.device_id: s for s in self.records
                          if (s.partition, s.offset, s.device_id) == (partition, offset,
                                                                      device_id)})
        return found


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_service(reader: FakeReader | None = None, clock: Clock | None = None,
                 settings: Settings = SETTINGS) -> tuple[Service, FakeConsumer, FakeProducer,
                                                         list[str]]:
    journal: list[str] = []
    consumer, producer = FakeConsumer(journal), FakeProducer(journal)
    clock = clock or Clock()
    service = Service(settings, FakeModel(), consumer, producer, reader or FakeReader(),
                      clock=clock, wall=lambda: 1_700_000_000.0)
    consumer.listener = service.events
    return service, consumer, producer, journal


def sensor_records(device_id: str, samples: np.ndarray, partition: int = 0,
                   per_message: int = 50) -> list[Record]:
    return [Record("in", partition, i, device_id.encode(), codec.encode_sensor(b))
            for i, b in enumerate(batches_of(device_id, samples, per_message))]


def reference(device_id: str, samples: np.ndarray) -> dict[str, np.ndarray]:
    """Window id -> probabilities of an uninterrupted run (one message: the offline path)."""
    recognizer = Recognizer(FakeModel())
    out = recognizer.process(batches_of(device_id, samples, len(samples)))
    return {r.window_id: np.array(list(r.probabilities.values())) for r in out.results}


def published(producer: FakeProducer) -> dict[str, np.ndarray]:
    results = [codec.decode_result(value) for _, _, value, _, _ in producer.to("out")]
    return {r.window_id: np.array(list(r.probabilities.values())) for r in results}


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-6)


SAMPLES = synthetic_samples(1000, seed=5)
RECORDS = sensor_records("dev", SAMPLES)  # 20 messages of 50 samples on partition 0


def test_a_checkpoint_acknowledges_results_then_snapshots_then_commits() -> None:
    service, consumer, producer, journal = make_service()
    consumer.script = [([("assigned", [0])], RECORDS[:10])]
    service.step()
    journal.clear()
    service.checkpoint()
    assert journal == ["flush", "send log", "flush", "commit"]
    (snapshot,) = producer.to("log")
    _, key, _, headers, partition = snapshot
    assert (key, partition) == (b"dev", 0)  # changelog partition = input partition
    assert dict(headers)[HEADER_COVERS_OFFSET] == b"10"
    assert consumer.committed_offsets == {0: 10}


def test_nothing_is_committed_when_the_broker_rejects_output() -> None:
    service, consumer, producer, journal = make_service()
    consumer.script = [([("assigned", [0])], RECORDS[:10])]
    service.step()
    producer.fail = RuntimeError("broker says no")
    with pytest.raises(ServiceError, match="rejected results"):
        service.checkpoint()
    assert "commit" not in journal and not producer.to("log")


def test_restored_state_continues_exactly_and_covered_replays_are_skipped() -> None:
    """The snapshot is 4000 samples ahead of the commit: more than the pipeline's own
    duplicate detection absorbs, so only the changelog's covered offset avoids a reset."""
    samples = synthetic_samples(6000, seed=6)
    records = sensor_records("dev", samples)  # 120 messages
    first, consumer, producer, _ = make_service()
    consumer.script = [([("assigned", [0])], records[:20])]
    first.step()
    first.checkpoint()  # snapshot covers offsets < 20, commit 20
    consumer.script = [([], records[20:100])]
    first.step()
    first._commit = lambda offsets: None  # type: ignore[method-assign]
    first.checkpoint()  # snapshot covering < 100 written, then a crash before the commit
    reader = FakeReader()
    reader.load(producer)

    second, consumer2, producer2, _ = make_service(reader)
    consumer2.committed_offsets = {0: 20}
    consumer2.script = [([("assigned", [0])], records[20:])]  # replay from the commit
    second.step()
    assert reader.partition_reads == [[0]]
    assert not set(published(producer)) & set(published(producer2)), "replays were skipped"
    assert_same(published(producer) | published(producer2), reference("dev", samples))


def test_a_partition_given_back_keeps_its_state_unless_someone_committed() -> None:
    reader = FakeReader()
    service, consumer, producer, _ = make_service(reader)
    consumer.script = [([("assigned", [0, 1])], RECORDS[:6]),
                       ([("revoked", [0, 1]), ("assigned", [0, 1])], RECORDS[6:10])]
    service.step()
    service.checkpoint()
    service.step()
    assert reader.partition_reads == [[0, 1]], "no second restore: nobody else committed"
    service.checkpoint()

    consumer.committed_offsets[0] = 15  # another member processed up to 15 meanwhile
    reader.load(producer)
    consumer.script = [([("revoked", [0, 1]), ("assigned", [0])], [])]
    service.step()
    assert reader.partition_reads == [[0, 1], [0]]
    assert service.ownership.owned == {0}


def test_kept_state_skips_the_replay_from_the_committed_offset() -> None:
    """After an eager rebalance gives the partition back, the consumer restarts at the
    committed offset; what the kept state already holds is skipped, not applied twice."""
    samples = synthetic_samples(6000, seed=8)
    records = sensor_records("dev", samples)  # 120 messages
    reader = FakeReader()
    service, consumer, producer, _ = make_service(reader)
    consumer.script = [([("assigned", [0])], records[:6]), ([], records[6:90]),
                       ([("revoked", [0]), ("assigned", [0])], records[6:])]
    service.step()
    service.checkpoint()  # commit 6
    service.step()  # 84 messages (4200 samples) processed, not committed
    service.step()  # rebalance: kept, and the consumer replays from offset 6
    assert reader.partition_reads == [[0]]
    windows = [codec.decode_result(v).window_id for _, _, v, _, _ in producer.to("out")]
    assert len(windows) == len(set(windows)), "nothing was applied twice"
    assert_same(published(producer), reference("dev", samples))


def test_lost_partitions_drop_their_devices() -> None:
    service, consumer, _, _ = make_service()
    other = sensor_records("other", SAMPLES, partition=1)
    consumer.script = [([("assigned", [0, 1])], RECORDS[:5] + other[:5]),
                       ([("lost", [1])], [])]
    service.step()
    assert sorted(service.registry.device_ids()) == ["dev", "other"]
    service.step()
    assert service.registry.device_ids() == ["dev"] and service.ownership.owned == {0}


def test_rejected_messages_become_dead_letters_with_their_bytes_and_headers() -> None:
    service, consumer, producer, _ = make_service()
    bad = Record("in", 0, 20, b"dev", b"{oops", headers=[("trace", b"42")])
    consumer.script = [([("assigned", [0])], [*RECORDS, bad])]
    service.step()
    ((_, key, value, headers, _),) = producer.to("dlq")
    assert (key, value) == (b"dev", b"{oops")
    assert headers[0] == ("trace", b"42")
    assert dict(headers)[codec.HEADER_REASON] == b"not_json"
    assert dict(headers)[codec.HEADER_SOURCE_OFFSET] == b"20"
    assert_same(published(producer), reference("dev", SAMPLES))


def test_idle_devices_are_evicted_and_come_back_from_their_snapshot() -> None:
    clock, reader = Clock(), FakeReader()
    service, consumer, producer, _ = make_service(reader, clock)
    consumer.script = [([("assigned", [0])], RECORDS[:9])]
    service.step()
    service.checkpoint()
    clock.now += 120  # past the 60 s TTL
    service.checkpoint()
    assert len(service.registry) == 0 and "dev" in service.ownership.evicted
    reader.load(producer)
    consumer.script = [([], RECORDS[9:])]
    service.step()
    assert reader.record_reads == [{"dev": (0, 0)}]
    assert_same(published(producer), reference("dev", SAMPLES))


def test_counts_count_every_window_once() -> None:
    service, consumer, producer, _ = make_service()
    consumer.script = [([("assigned", [0])], RECORDS)]
    service.step()
    last = codec.decode_counts(producer.to("counts")[-1][2])
    assert sum(last.windows.values()) == len(reference("dev", SAMPLES))
    assert window_id("dev", last.last_seq) in reference("dev", SAMPLES)


def test_a_poll_mixing_a_continuing_and_a_new_device_labels_every_window_right() -> None:
    """Regression: with equal message lengths, a continuing device completing two windows
    and a new device completing none formed one group whose windows got both names."""
    old, new = synthetic_samples(1000, seed=21), synthetic_samples(1000, seed=22)
    old_records = sensor_records("old", old, per_message=25)
    new_records = [dataclasses_replace(r, partition=1) for r in
                   sensor_records("new", new, per_message=25)]
    service, consumer, producer, _ = make_service()
    consumer.script = [([("assigned", [0, 1])], old_records[:35]),
                       ([], old_records[35:39] + new_records[:4]),
                       ([], old_records[39:] + new_records[4:])]
    for _ in range(3):
        service.step()
    assert_same(published(producer), reference("old", old) | reference("new", new))
