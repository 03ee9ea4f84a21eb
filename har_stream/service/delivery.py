"""Output delivery: every record the service produces ends acknowledged, dead-lettered, or the
service stops without committing.

An input offset may be committed only once everything produced from it is acknowledged, so a
record that can never be delivered must not hold its partition forever. Failures differ:

- the cluster is unreachable or slow (timeouts, retriable errors): the producer retries by
  itself, without a delivery deadline (`make_producer`); `settle` waits up to its timeout and
  raises `KafkaTimeout`, the caller commits nothing and tries again later;
- the broker refuses one record for good (`RecordRefused`: too large, invalid): re-sending
  it as it is cannot succeed. Such a "poison" record is re-sent at most `max_attempts` times
  in all (the refusal may have hit a whole batch of good records), then replaced by a dead
  letter that names the reason, so the checkpoint can complete. A dead letter refused in
  turn is re-sent stripped to its headers, then dropped with an error log: nothing loops;
- any other definitive failure (authorisation, a fatal producer state) is systemic: `settle`
  raises `DeliveryFailed` and the service stops without committing.

Checkpoints need "everything sent before this point is settled" without stopping the loop:
`mark` closes an epoch of sends, `delivered(epoch)` says, without waiting, whether every
record of that epoch and the earlier ones is acknowledged or replaced by an acknowledged dead
letter (a retry or dead letter stays in the epoch of the record it replaces).

Dead letters are bounded copies: the DLQ must accept whatever the input topic accepted, but a
dead letter adds headers to the original, so a value, key or header set near the size limit
is truncated (header `har.error.truncated` keeps the original sizes).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from har_stream.core import codec
from har_stream.core.logsafe import escape
from har_stream.kafka.ports import (
    Acknowledged,
    Delivery,
    Headers,
    KafkaFailure,
    KafkaTimeout,
    Producer,
    RecordRefused,
)
from har_stream.service import metrics

log = logging.getLogger(__name__)

HEADER_TRUNCATED = "har.error.truncated"
"""Dead-letter header: `key=<bytes>,value=<bytes>,headers=<bytes>` of the original when cut."""
MAX_DEAD_LETTER_VALUE = 512 * 1024
MAX_DEAD_LETTER_KEY = 1024
MAX_DEAD_LETTER_HEADERS = 16 * 1024
UNDELIVERABLE = "undeliverable_output"
"""`har.error.reason` of a dead letter that replaces an output record the broker refused."""

_OURS = frozenset((codec.HEADER_REASON, codec.HEADER_DETAIL, codec.HEADER_SOURCE_TOPIC,
                   codec.HEADER_SOURCE_PARTITION, codec.HEADER_SOURCE_OFFSET, HEADER_TRUNCATED))
"""Headers only the service writes: copies from the input are dropped, not trusted."""


class DeliveryFailed(RuntimeError):
    """The broker refused output for a reason that retrying cannot fix (message says which)."""


@dataclass(slots=True)
class _Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    partition: int | None
    on_ack: Callable[[Acknowledged], None] | None
    poison_to_dlq: bool  # False: a refusal is systemic (e.g. state snapshots)
    epoch: int
    attempts: int = 0
    stripped: bool = False


@dataclass(slots=True)
class _Pending:
    rejected: list[tuple[_Outgoing, BaseException]] = field(default_factory=list)
    failure: BaseException | None = None


class Outbox:
    """Sends through one producer and settles every send (see the module doc)."""

    def __init__(self, producer: Producer, dlq_topic: str, max_attempts: int = 3) -> None:
        self.producer = producer
        self.dlq_topic = dlq_topic
        self.max_attempts = max(max_attempts, 1)
        self._lock = threading.Lock()  # errbacks run on the producer's IO thread
        self._pending = _Pending()
        self._epoch = 0
        self._unsettled: dict[int, int] = {}  # epoch -> records sent, not yet acknowledged
        self.answers = 0  # records the broker acknowledged or refused: progress, for checkpoints

    @property
    def failure(self) -> BaseException | None:
        return self._pending.failure

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             headers: Headers | None = None, partition: int | None = None,
             on_ack: Callable[[Acknowledged], None] | None = None,
             poison_to_dlq: bool = True) -> Delivery | None:
        """Send one record; its future, or None when the producer refused it at once."""
        return self._send(_Outgoing(topic, key, value, list(headers or []), partition, on_ack,
                                    poison_to_dlq, self._epoch))

    def dead_letter(self, key: bytes | None, value: bytes | None, headers: Sequence[Any],
                    error_headers: Headers) -> Delivery | None:
        """Send a bounded copy of a rejected record to the DLQ, with `error_headers` last."""
        return self._send_dead_letter(key, value, headers, error_headers, self._epoch)

    def settle(self, timeout_s: float) -> None:
        """Wait until every send so far is acknowledged or replaced by a dead letter.

        Raises KafkaTimeout when the broker does not answer in time (nothing is lost:
        the producer keeps retrying) and DeliveryFailed on a systemic refusal.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self.producer.flush(timeout_s=max(deadline - time.monotonic(), 0.001))
            retried = self._resolve()
            if not retried:
                return
            if time.monotonic() > deadline:
                raise KafkaTimeout(f"{retried} refused records still being retried "
                                        f"after {timeout_s:g} s")

    def mark(self) -> int:
        """Close the current epoch of sends; its number, for `delivered`."""
        self._epoch += 1
        return self._epoch - 1

    def delivered(self, epoch: int) -> bool:
        """Whether every record sent up to `mark() == epoch` is settled; never waits.

        Re-sends refused records like `settle`; raises DeliveryFailed on a systemic refusal.
        """
        self._resolve()
        with self._lock:
            return (not any(e <= epoch for e in self._unsettled)
                    and not any(item.epoch <= epoch for item, _ in self._pending.rejected))

    def in_flight(self) -> int:
        """Records sent and not yet acknowledged or refused (what the producer buffers)."""
        with self._lock:
            return sum(self._unsettled.values())

    def serve(self) -> None:
        """Run the callbacks of acknowledgements that have arrived, without waiting.

        librdkafka reports deliveries only when asked; kafka-python runs them on its own
        thread and has nothing to serve (`ports.Producer.serve`).
        """
        self.producer.serve()

    def reset_failure(self) -> None:
        with self._lock:
            self._pending.failure = None

    # --- internals ---------------------------------------------------------------------------

    def _resolve(self) -> int:
        """Raise a systemic failure, re-send the refused records; how many were re-sent."""
        with self._lock:
            failure = self._pending.failure
            rejected, self._pending.rejected = self._pending.rejected, []
        if failure is not None:
            raise DeliveryFailed(f"{type(failure).__name__}: {failure}")
        for item, error in rejected:
            self._retry(item, error)
        return len(rejected)

    def _send_dead_letter(self, key: bytes | None, value: bytes | None, headers: Sequence[Any],
                          error_headers: Headers, epoch: int) -> Delivery | None:
        key, value, bounded = bounded_dead_letter(key, value, list(headers or []),
                                                  error_headers)
        return self._send(_Outgoing(self.dlq_topic, key, value, bounded, None, None, True,
                                    epoch))

    def _send(self, item: _Outgoing) -> Delivery | None:
        item.attempts += 1
        try:
            future = self.producer.send(item.topic, key=item.key, value=item.value,
                                        headers=item.headers, partition=item.partition)
        except KafkaTimeout:
            raise  # no metadata or no buffer space within max_block_ms: not this record's fault
        except KafkaFailure as exc:  # e.g. larger than max_request_size: refused before sending
            self._failed(item, False, exc)
            return None
        with self._lock:
            self._unsettled[item.epoch] = self._unsettled.get(item.epoch, 0) + 1
        future.add_both(functools.partial(self._outcome, item))
        return future

    def _outcome(self, item: _Outgoing, outcome: Acknowledged | KafkaFailure) -> None:
        """A send's future resolved: `outcome` is its metadata, or the exception."""
        if isinstance(outcome, BaseException):
            self._failed(item, True, outcome)
        else:
            self._acknowledged(item, outcome)

    def _settled(self, item: _Outgoing) -> None:
        self.answers += 1
        left = self._unsettled[item.epoch] - 1
        if left:
            self._unsettled[item.epoch] = left
        else:
            del self._unsettled[item.epoch]

    def _acknowledged(self, item: _Outgoing, metadata: Acknowledged) -> None:
        with self._lock:
            self._settled(item)
        if item.on_ack is not None:
            item.on_ack(metadata)

    def _failed(self, item: _Outgoing, counted: bool, exc: BaseException) -> None:
        metrics.PRODUCE_ERRORS.labels(topic=item.topic).inc()
        with self._lock:
            if counted:
                self._settled(item)
            if isinstance(exc, RecordRefused) and item.poison_to_dlq:
                self._pending.rejected.append((item, exc))
            elif self._pending.failure is None:
                self._pending.failure = exc

    def _retry(self, item: _Outgoing, error: BaseException) -> None:
        if item.attempts < self.max_attempts:
            self._send(item)
        elif item.topic != self.dlq_topic:
            metrics.OUTPUT_DEAD_LETTERED.labels(topic=item.topic).inc()
            log.warning("a record for %s was refused %d times (%s: %s); sent to %s instead",
                        item.topic, item.attempts, type(error).__name__,
                        escape(str(error)), self.dlq_topic)
            detail = (f"{item.topic} refused it {item.attempts} times: "
                      f"{type(error).__name__}: {error}")
            self._send_dead_letter(item.key, item.value, [], codec.dead_letter_headers(
                UNDELIVERABLE, escape(detail), item.topic), item.epoch)
        elif not item.stripped:
            ours = [(k, v) for k, v in item.headers if k.startswith("har.")]
            self._send(replace(item, key=None, value=b"", headers=ours, attempts=0,
                               stripped=True))
        else:
            log.error("dropping a dead letter the broker refuses even without its payload "
                      "(%s: %s)", type(error).__name__, escape(str(error)))


def bounded_dead_letter(key: bytes | None, value: bytes | None, headers: Headers,
                        error_headers: Headers
                        ) -> tuple[bytes | None, bytes | None, Headers]:
    """(key, value, headers) of a dead letter: the original, cut where it is too large."""
    cut = []
    if key is not None and len(key) > MAX_DEAD_LETTER_KEY:
        cut.append(f"key={len(key)}")
        key = bytes(key[:MAX_DEAD_LETTER_KEY])
    if value is not None and len(value) > MAX_DEAD_LETTER_VALUE:
        cut.append(f"value={len(value)}")
        value = bytes(value[:MAX_DEAD_LETTER_VALUE])
    # other clients may write null header values, which kafka-python cannot send back
    headers = [(str(k), bytes(v or b"")) for k, v in headers if str(k) not in _OURS]
    size = sum(len(k.encode("utf-8", "replace")) + len(v) for k, v in headers)
    if size > MAX_DEAD_LETTER_HEADERS:
        cut.append(f"headers={size}")
        headers = []
    if cut:
        error_headers = [*error_headers, (HEADER_TRUNCATED, ",".join(cut).encode())]
    if key is None and value is None:
        value = b""  # a producer needs one of them
    return key, value, headers + error_headers
