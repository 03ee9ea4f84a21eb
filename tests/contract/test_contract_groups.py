"""Group members through every driver: partitions shared, handed over, every record once.

A member that joins takes a share of the partitions: the member that had them hears
`revoked` then `assigned` (in its own poll, or on the client's thread), the shares are
disjoint and cover the topic; a member that closes hands its share back. With a commit after
every poll, each record is done exactly once across the members: a commit the group refuses
(`CommitFailed`: the partition moved) leaves its records to the new owner.
"""

from __future__ import annotations

from contract_support import Kafka, Listener, group_name, poll_until, send_all

from har_stream.kafka.ports import CommitFailed, Consumer, Partition, Record

PARTITIONS = 4


class Member:
    """A group member that commits what it polled after every poll, and keeps what it did."""

    def __init__(self, consumer: Consumer, topic: str) -> None:
        self.consumer = consumer
        self.listener = Listener()
        self.done: list[tuple[int, int]] = []  # (partition, offset) committed by this member
        consumer.subscribe([topic], self.listener)

    def step(self) -> int:
        """One poll and its commit; how many records this member has done."""
        polled = self.consumer.poll(timeout_ms=50)
        if polled:
            offsets = {p: records[-1].offset + 1 for p, records in polled.items()}
            try:
                self.consumer.commit(offsets)
            except CommitFailed:  # the partitions moved: their new owner reads them again
                return len(self.done)
            self.done.extend((r.partition, r.offset) for rs in polled.values() for r in rs
                             if isinstance(r, Record))
        return len(self.done)


def _everything(topic: str) -> set[Partition]:
    return {Partition(topic, p) for p in range(PARTITIONS)}


def test_partitions_pass_between_members_and_every_record_is_done_once(driver: Kafka) -> None:
    topic, group = driver.topic(partitions=PARTITIONS), group_name()
    producer = driver.producer()
    send_all(producer, topic, [b"a"] * 8, partition=None, key=lambda i: f"k{i}".encode())
    first = Member(driver.member(group), topic)
    assert poll_until([], lambda: first.step() == 8), first.done
    assert first.consumer.assignment() == _everything(topic)
    assert first.listener.kinds()[-1] == "assigned"

    second = Member(driver.member(group), topic)
    members = [first, second]

    def shared() -> bool:
        for member in members:
            member.step()
        a, b = first.consumer.assignment(), second.consumer.assignment()
        return bool(a) and bool(b) and not a & b and a | b == _everything(topic)

    assert poll_until([], shared), (first.listener.events, second.listener.events)
    kinds = first.listener.kinds()
    assert kinds.index("revoked", 1) < len(kinds) - 1 and kinds[-1] == "assigned"
    assert first.listener.events[-1][1] == first.consumer.assignment()
    assert second.listener.events[-1] == ("assigned", second.consumer.assignment())

    send_all(producer, topic, [b"b"] * 24, partition=None, key=lambda i: f"k{i}".encode())
    assert poll_until([], lambda: sum([m.step() for m in members]) >= 32)
    assert second.done, "the second member did its share"

    second.consumer.close()
    assert poll_until([], lambda: first.step() >= 0
                      and first.consumer.assignment() == _everything(topic))
    send_all(producer, topic, [b"c"] * 8, partition=None, key=lambda i: f"k{i}".encode())
    assert poll_until([], lambda: first.step() + len(second.done) >= 40)

    done = first.done + second.done
    assert len(done) == 40 and len(set(done)) == 40, "every record done, none twice"
    ends = {p: max(o for q, o in done if q == p) + 1 for p in {q for q, _ in done}}
    assert {p: first.consumer.committed(Partition(topic, p)) for p in ends} == ends


def test_a_member_of_an_unknown_topic_gets_nothing_and_creates_nothing(driver: Kafka) -> None:
    missing = driver.name_topic()
    member = driver.member(group_name())
    listener = Listener()
    member.subscribe([missing], listener)
    assert member.poll(timeout_ms=500) == {}
    assert member.assignment() == set()
    assert missing not in member.topics()
    assert driver.admin.partition_counts([missing]) == {}
