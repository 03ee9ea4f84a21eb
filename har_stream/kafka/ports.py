"""har-stream's own Kafka interface: what the service asks of a consumer, a producer, an admin.

Why: the service, its tools and its tests speak to Kafka through these three ports only, so
a client library is a driver behind them (`drivers/librdkafka_*.py`, `drivers/kafka_python_*.py`,
and `drivers/memory*.py`, an in-process cluster for fast tests), and one contract suite
(tests/contract/) proves that every driver behaves the same. Nothing here imports a client
library; the types are plain tuples, the errors our own.

Semantics every driver keeps (the contract suite checks each):

- Offsets are Kafka's: `commit({p: n})` means "records below n are done"; `committed(p)` is
  the group's committed offset (None without one); `position(p)` the next offset `poll` will
  hand over (None before it is known); `highwater(p)` the end of the partition as of the last
  fetch (None until known; no request).
- `poll` hands over, grouped by partition in offset order, at most `max_records` records of
  the assigned partitions that are not paused, and returns as soon as it has any (waiting up
  to `timeout_ms` for the first). A record the client cannot read whole comes as a
  `Damaged` entry at its offset (`poison.py`), never as an exception, so one bad record
  cannot stop a partition.
- Rebalance callbacks of `subscribe`'s listener run inside `poll`, on the caller's thread, or
  (kafka-python) on the client's own thread: a listener only records what happened.
- A producer's `send` never waits for the broker: the returned `Delivery` resolves later with
  an `Acknowledged` or a `KafkaFailure`, and its callbacks run inside `serve`, `flush`,
  `send` or `close` of the producer, or on the client's thread. Keyed records without a
  partition land on murmur2(key) % partitions, as with the Java client, whichever driver
  sent them. No client ever creates a topic by sending to it or asking for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

Headers = list[tuple[str, bytes]]


class Partition(NamedTuple):
    """One partition of one topic (equal to and hashed like a (topic, partition) tuple)."""

    topic: str
    partition: int


class Record(NamedTuple):
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms since the epoch, as the producer or broker set it (-1: none)
    key: bytes | None
    value: bytes | None
    headers: Headers | None


BAD_HEADER = "bad_header"
"""A record whose header keys are not text: read as stored, its dead letter keeps it whole."""
BAD_CHECKSUM = "bad_checksum"
BAD_COMPRESSION = "bad_compression"
CORRUPT_RECORD = "corrupt_record"
SKIP_REASONS = (BAD_CHECKSUM, BAD_COMPRESSION, CORRUPT_RECORD)
"""Why a record could not be read at all (a closed set, safe as a metric label)."""


class Damaged(NamedTuple):
    """A record the client could not hand over whole, in its place in a poll (`poison.py`)."""

    topic: str
    partition: int
    offset: int
    reason: str  # BAD_HEADER (readable: dead-lettered) or one of SKIP_REASONS (skipped)
    detail: str
    key: bytes | None = None
    value: bytes | None = None
    timestamp: int = -1
    headers: Headers | None = None

    @property
    def readable(self) -> bool:
        return self.reason == BAD_HEADER


class Acknowledged(NamedTuple):
    """Where the broker stored a record, and when its acknowledgement arrived."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    acknowledged_at: float | None = None  # wall-clock s; None: the driver cannot tell


# --- errors ------------------------------------------------------------------------------------


class KafkaFailure(Exception):
    """A Kafka operation failed. `code` is Kafka's error code when the broker gave one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class KafkaTimeout(KafkaFailure):
    """No answer in time (flush deadline, full local queue, metadata): nothing is lost, the
    client keeps retrying; try again later."""


class RecordRefused(KafkaFailure):
    """The broker refused this record (or its batch) for good: too large, invalid, bad
    timestamp. Re-sending it as it is cannot succeed; the rest of the output is fine."""


class CommitFailed(KafkaFailure):
    """The group did not take the offsets (e.g. the partitions moved to another member)."""


class TopicMissing(KafkaFailure):
    """The topic does not exist (and no client of ours creates one by asking for it)."""


# --- the ports ---------------------------------------------------------------------------------


class RebalanceListener(Protocol):
    """Told of assignment changes; records them only (see the module doc)."""

    def on_partitions_revoked(self, partitions: list[Partition]) -> None: ...

    def on_partitions_assigned(self, partitions: list[Partition]) -> None: ...

    def on_partitions_lost(self, partitions: list[Partition]) -> None: ...


class Consumer(Protocol):
    """A consumer: a group member (`subscribe`) or a reader of chosen partitions (`assign`)."""

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None
                  ) -> None: ...

    def assign(self, partitions: Sequence[Partition]) -> None:
        """Read exactly these partitions, without a group (an empty list: none)."""

    def seek(self, partition: Partition, offset: int) -> None:
        """The next `poll` of `partition` starts at `offset`."""

    def seek_to_beginning(self, *partitions: Partition) -> None: ...

    def poll(self, timeout_ms: int = 0, max_records: int = 500
             ) -> Mapping[Partition, list[Record | Damaged]]: ...

    def assignment(self) -> set[Partition]: ...

    def pause(self, *partitions: Partition) -> None: ...

    def resume(self, *partitions: Partition) -> None: ...

    def committed(self, partition: Partition) -> int | None: ...

    def position(self, partition: Partition) -> int | None: ...

    def highwater(self, partition: Partition) -> int | None: ...

    def commit(self, offsets: Mapping[Partition, int], timeout_s: float = 30.0) -> None:
        """Commit and wait for the group's answer; `CommitFailed` when it refuses."""

    def connected(self) -> bool | None:
        """Whether the client holds a connection to any broker; None while it cannot tell."""

    def topics(self) -> set[str]:
        """The topics that exist, asked of the cluster now (`KafkaFailure` when it cannot
        answer). Refreshes what `topic_id` knows."""

    def topic_id(self, topic: str) -> str | None:
        """The id Kafka gave `topic` when it was created (a recreated topic has a new one),
        as last known; None when unknown."""

    def close(self) -> None: ...


class Delivery(Protocol):
    """The outcome of one send (see the module doc for where callbacks run)."""

    def add_both(self, fn: Callable[[Acknowledged | KafkaFailure], object]) -> Delivery:
        """`fn(acknowledged)` on success, `fn(failure)` on failure, once."""

    def get(self, timeout_s: float | None = None) -> Acknowledged:
        """Wait for the outcome; raise the failure."""


class Producer(Protocol):
    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None,
             headers: Headers | None = None, partition: int | None = None) -> Delivery:
        """Queue one record; `RecordRefused` at once for a record the client will never
        send (too large), `KafkaTimeout` when the local queue stays full."""

    def serve(self) -> None:
        """Run the callbacks of acknowledgements that arrived; never waits."""

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every record sent so far is acknowledged or failed (`KafkaTimeout`)."""

    def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions, asked of the cluster (empty: no such topic)."""

    def close(self, timeout_s: float | None = None) -> None: ...


class TopicLayout(NamedTuple):
    """How to create one topic."""

    partitions: int
    replication_factor: int = 1
    configs: Mapping[str, str] = {}


class Admin(Protocol):
    def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        """Partition count of each of `topics` that exists (absent ones are left out)."""

    def create_topics(self, layouts: Mapping[str, TopicLayout]) -> set[str]:
        """Create the topics; those created now (one that exists already is no error)."""

    def delete_topics(self, topics: Iterable[str]) -> None: ...

    def close(self) -> None: ...
