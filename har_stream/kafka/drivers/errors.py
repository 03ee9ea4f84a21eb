"""Kafka error codes to har-stream's own failures (`ports.KafkaFailure` and its kinds).

One table for both libraries: kafka-python's exceptions carry the broker's code (`errno`),
librdkafka's errors the same codes for the broker's answers and negative ones for its own
(local) conditions, of which only the timeouts and the unknown topic have a kind of their own.
"""

from __future__ import annotations

from har_stream.kafka.ports import (
    CommitFailed,
    KafkaFailure,
    KafkaTimeout,
    RecordRefused,
    TopicMissing,
)

MESSAGE_TOO_LARGE = 10
RECORD_LIST_TOO_LARGE = 18
INVALID_TIMESTAMP = 32
INVALID_RECORD = 87
REFUSED_CODES = frozenset((MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, INVALID_TIMESTAMP,
                           INVALID_RECORD))
"""The broker refuses this record (or its batch) for good; the cluster itself is fine."""
REQUEST_TIMED_OUT = 7
UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION
TOPIC_EXISTS = 36  # TOPIC_ALREADY_EXISTS
INVALID_PARTITIONS = 37
COMMIT_CODES = frozenset((22, 25, 27, 79))
"""ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID: the group
moved on; the partitions are someone else's now."""


def failure(code: int | None, message: str) -> KafkaFailure:
    """The failure of a Kafka error `code` (None: no code; the client's own trouble)."""
    if code in REFUSED_CODES:
        return RecordRefused(message, code)
    if code == REQUEST_TIMED_OUT:
        return KafkaTimeout(message, code)
    if code == UNKNOWN_TOPIC:
        return TopicMissing(message, code)
    if code in COMMIT_CODES:
        return CommitFailed(message, code)
    return KafkaFailure(message, code)


def commit_failure(code: int | None, message: str) -> KafkaFailure:
    """A commit's failure: `CommitFailed` unless nothing was answered in time (then nothing is
    known and `KafkaTimeout` says so)."""
    found = failure(code, message)
    if isinstance(found, KafkaTimeout | CommitFailed):
        return found
    return CommitFailed(message, code)
