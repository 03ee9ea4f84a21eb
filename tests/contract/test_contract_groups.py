"""Group members through every driver: partitions shared, handed over, every record once.

A member that joins takes a share of the partitions: the member that had them hears
`revoked` then `assigned`, the shares are disjoint and cover the topic; a member that closes
hands its share back. With a commit after every poll, each record is done exactly once
across the members: a commit the group refuses (`CommitFailed`: the partition moved) leaves
its records to the new owner. Each member polls on a thread of its own, as two service
processes would (a joining member's poll may wait for the others to join again).
"""

from __future__ import annotations

import threading
import time

from contract_support import WAIT_S, Kafka, Listener, group_name, send_all

from har_stream.kafka.ports import CommitFailed, Consumer, Partition, Record

PARTITIONS = 4


class Member(threading.Thread):
    """A group member polling on its own thread, committing what it polled after every poll;
    the test reads what it did (`done`, `assigned`) and tells it to `leave` (close)."""

    def __init__(self, consumer: Consumer, topic: str) -> None:
        super().__init__(daemon=True, name="member")
        self.consumer, self.topic = consumer, topic
        self.listener = Listener()
        self.done: list[tuple[int, int]] = []  # (partition, offset) committed by this member
        self.assigned: set[Partition] = set()
        self.leave = threading.Event()
        self.failure: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.consumer.subscribe([self.topic], self.listener)
            while not self.leave.is_set():
                self._step()
                self.assigned = self.consumer.assignment()
            self.consumer.close()
        except BaseException as exc:  # the test reports it
            self.failure = exc

    def _step(self) -> None:
        polled = self.consumer.poll(timeout_ms=100)
        if not polled:
            return
        try:
            self.consumer.commit({p: records[-1].offset + 1 for p, records in polled.items()})
        except CommitFailed:  # the partitions moved: their new owner reads them again
            return
        self.done.extend((r.partition, r.offset) for rs in polled.values() for r in rs
                         if isinstance(r, Record))

    def stop(self) -> None:
        self.leave.set()
        self.join(WAIT_S)
        assert not self.is_alive() and self.failure is None, self.failure


def until(done: object, members: list[Member]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():  # type: ignore[operator]
        for member in members:
            assert member.failure is None, member.failure
        assert time.monotonic() < deadline, [(m.assigned, m.listener.events) for m in members]
        time.sleep(0.02)


def test_partitions_pass_between_members_and_every_record_is_done_once(driver: Kafka) -> None:
    topic, group = driver.topic(partitions=PARTITIONS), group_name()
    everything = {Partition(topic, p) for p in range(PARTITIONS)}
    producer = driver.producer()

    def send(count: int) -> None:
        send_all(producer, topic, [b"r"] * count, partition=None,
                 key=lambda i: f"k{i}".encode())

    send(8)
    first = Member(driver.member(group), topic)
    until(lambda: len(first.done) >= 8 and first.assigned == everything, [first])
    assert first.listener.kinds()[-1] == "assigned"

    second = Member(driver.member(group), topic)
    members = [first, second]
    until(lambda: first.assigned and second.assigned and not first.assigned & second.assigned
          and first.assigned | second.assigned == everything, members)
    kinds = first.listener.kinds()
    assert "revoked" in kinds[1:-1] and kinds[-1] == "assigned", first.listener.events
    assert first.listener.events[-1][1] == first.assigned
    assert second.listener.events[-1] == ("assigned", frozenset(second.assigned))
    assert first.listener.types | second.listener.types == {Partition}

    send(24)
    until(lambda: len(first.done) + len(second.done) >= 32, members)
    assert second.done, "the second member did its share"

    second.stop()
    until(lambda: first.assigned == everything, [first])
    send(8)
    until(lambda: len(first.done) + len(second.done) >= 40, [first])
    first.stop()

    done = first.done + second.done
    assert len(done) == 40 and len(set(done)) == 40, "every record done, none twice"
    ends = {p: max(o for q, o in done if q == p) + 1 for p in {q for q, _ in done}}
    reader = driver.consumer(group)
    assert {p: reader.committed(Partition(topic, p)) for p in ends} == ends


def test_a_member_of_an_unknown_topic_gets_nothing_and_creates_nothing(driver: Kafka) -> None:
    missing = driver.name_topic()
    member = driver.member(group_name())
    listener = Listener()
    member.subscribe([missing], listener)
    assert member.poll(timeout_ms=500) == {}
    assert member.assignment() == set()
    assert missing not in member.topics()
    assert driver.admin.partition_counts([missing]) == {}

