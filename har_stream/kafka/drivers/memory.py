"""An in-process Kafka cluster behind the ports: fast tests without a broker.

Why: the service's tests, its reliability tests among them (100,000 devices), need a Kafka
that answers at memory speed and that a test can steer: hold acknowledgements, cut the
connection, refuse records, damage one, expel a member. `MemoryCluster` is that Kafka, and
`.consumer()`, `.producer()`, `.admin()` are clients of it that keep the ports' semantics
(the contract suite, tests/contract/, runs them beside the real drivers). Fault injection is
a cluster-level control: what a broker or the network would do, not a scripted client.

What it models: partitions as offset-addressed logs (a record is stored, and readable, once
acknowledged); groups whose members share the partitions of their topics by range
assignment, rebalanced when a member joins, leaves or is expelled, the callbacks running in
each member's next `poll` (eager: revoked all, then assigned all, positions from the
committed offsets); keyed records on murmur2(key) % partitions; compacted topics
(`cleanup.policy=compact`: a key's older record is removed when a newer one is stored);
topic ids, new for a recreated topic; no auto-creation anywhere. The storage is in
`memory_log.py`, the clients in `memory_consumer.py`, `memory_producer.py` and
`memory_admin.py`.

Test controls (attributes and methods of the cluster):
- `auto_acknowledge` (True): records are acknowledged at their producer's next `serve`,
  `flush` or `send`; False: they wait for `acknowledge(n)` (`producer=`: only its own).
- `reachable` (True): False cuts every client off: `connected()` False, polls empty,
  deliveries wait, `flush` / `commit` / metadata raise `KafkaTimeout`.
- `refuse(topic, key, value, headers, partition) -> KafkaFailure | None`: consulted at
  acknowledgement, a failure fails the delivery; `refuse_at_send` the same, raised by `send`.
- `damage(topic, partition, offset, reason)`: polls hand a `Damaged` entry at that offset.
- `retain(topic, False)`: the topic's records are counted (offsets advance), not kept; or
  `retain(topic, fn)`: only records whose key `fn(key)` accepts are kept;
  `delete_records(topic, {partition: offset})` removes those below, as Kafka's retention.
- `expel(consumer)`: the member leaves its group; its next poll reports the partitions lost.
- `rebalance(group)`: every member hears revoked then assigned in its next poll.
- `put(topic, partition, key, value, headers, timestamp_ms)`: a record stored as another
  client would have (no producer).
- `records(topic)`, `count(topic)`, `committed_offsets(group)`, `pending(topic)`: what it
  holds.
- `journal` (None): a list to keep the order of calls in: "send <topic>", "flush", "commit".
- `waits` (True): polls and flushes wait as the ports say; False: they never block (tests
  that drive the service with a fake clock).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from har_stream.kafka.drivers.memory_admin import MemoryAdmin
from har_stream.kafka.drivers.memory_consumer import MemoryConsumer
from har_stream.kafka.drivers.memory_log import MAX_RECORD_BYTES, partition_of
from har_stream.kafka.drivers.memory_producer import MemoryProducer
from har_stream.kafka.drivers.memory_state import ClusterState
from har_stream.kafka.ports import TopicLayout

__all__ = ["MemoryCluster", "partition_of"]


class MemoryCluster(ClusterState):
    """An in-process Kafka cluster (see the module doc for what it models and its controls)."""

    def __init__(self, *, auto_acknowledge: bool = True, waits: bool = True,
                 max_record_bytes: int = MAX_RECORD_BYTES,
                 wall: Callable[[], float] = time.time) -> None:
        super().__init__(auto_acknowledge=auto_acknowledge, waits=waits,
                         max_record_bytes=max_record_bytes, wall=wall)

    # --- clients ---------------------------------------------------------------------------

    def consumer(self, group_id: str | None = None, auto_offset_reset: str = "earliest"
                 ) -> MemoryConsumer:
        return MemoryConsumer(self, group_id, auto_offset_reset)

    def producer(self) -> MemoryProducer:
        producer = MemoryProducer(self)
        with self.lock:
            self.producers.append(producer)
        return producer

    def admin(self) -> MemoryAdmin:
        return MemoryAdmin(self)

    def create_topic(self, name: str, partitions: int = 1,
                     configs: Mapping[str, str] | None = None, retain: bool = True) -> str:
        """Create `name` (a test's shortcut for the admin call); its id."""
        self.admin().create_topics({name: TopicLayout(partitions, 1, dict(configs or {}))})
        self.retain(name, retain)
        return self.topics[name].id
