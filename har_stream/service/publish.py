"""Publishing: a recognition step's outputs sent to their topics, and counted when acknowledged.

Why a module of its own: what a step produces (results, running counts, the subscriber
records) and what the metrics say about it belong together, apart from how the loop polls
and checkpoints. Every record goes through the `Outbox` (key = device id, no waiting), so
it ends acknowledged, dead-lettered, or the service stops without committing.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable

from har_stream.core import codec
from har_stream.core.recognizer import RecognizerOutput
from har_stream.kafka.ports import Acknowledged
from har_stream.kafka.settings import TopicSettings
from har_stream.service import metrics
from har_stream.service.delivery import Outbox
from har_stream.service.subscriber_publisher import SubscriberPublisher


class Publisher:
    """Sends what the recognizer produced (see the module doc)."""

    def __init__(self, outbox: Outbox, topics: TopicSettings,
                 subscribers: SubscriberPublisher, wall: Callable[[], float]) -> None:
        self.outbox = outbox
        self.topics = topics
        self.subscribers = subscribers
        self.wall = wall

    def send(self, output: RecognizerOutput) -> None:
        send = self.outbox.send
        for result in output.results:
            send(self.topics.activity_topic, result.device_id.encode(),
                 codec.encode_result(result),
                 on_ack=functools.partial(_acknowledged_result, result.record_ts_ms, self.wall))
        for counts in output.counts:
            send(self.topics.counts_topic, counts.device_id.encode(), codec.encode_counts(counts),
                 on_ack=_acknowledged_counts)
        if output.subscribers is not None:
            self.subscribers.send(output.subscribers)


def record_stats(output: RecognizerOutput) -> None:
    """The step's pipeline events and classified windows, in the metrics."""
    stats = output.stats
    metrics.PIPELINE_EVENTS.labels(event="duplicate_samples").inc(stats.duplicate_samples)
    metrics.PIPELINE_EVENTS.labels(event="gap_samples_filled").inc(stats.gap_samples_filled)
    metrics.PIPELINE_EVENTS.labels(event="stream_resets").inc(stats.stream_resets)
    metrics.PIPELINE_EVENTS.labels(event="late_samples").inc(stats.late_samples)
    metrics.PIPELINE_EVENTS.labels(event="reordered_messages").inc(stats.reordered_messages)
    for activity, windows in Counter(result.activity for result in output.results).items():
        metrics.WINDOWS_CLASSIFIED.labels(activity=activity).inc(windows)


def _acknowledged_result(record_ts_ms: int, wall: Callable[[], float],
                         acknowledged: Acknowledged) -> None:
    """Counts the result; its latency ends when the broker acknowledged it, which a driver
    may record itself (librdkafka reports acknowledgements only when the loop asks), else
    now."""
    metrics.RESULTS_PUBLISHED.inc()
    if record_ts_ms > 0:
        acknowledged_at = getattr(acknowledged, "acknowledged_at", None) or wall()
        metrics.END_TO_END_LATENCY.observe(max(acknowledged_at - record_ts_ms / 1000.0, 0.0))


def _acknowledged_counts(_acknowledged: Acknowledged) -> None:
    metrics.COUNTS_PUBLISHED.inc()
