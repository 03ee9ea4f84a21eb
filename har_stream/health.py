"""Is the cluster reachable? One answer for the metric, the logs and the loop.

The Kafka client retries on its own when the brokers go away, so the loop sees nothing but
empty polls; without this watch the service would look healthy while doing nothing. The
signal is the consumer's own count of open broker connections (its public `metrics()`),
read at most every `every_s`: the consumer always keeps a connection to its group
coordinator, so zero for longer than `grace_s` means the cluster is out of reach. The way
back needs connections on two checks `every_s` apart: the count includes a connection still
being attempted, which a refused connect closes again. Transitions are logged once, with
the time they took, and a reminder follows every `remind_s` while the outage lasts;
`har_broker_connected` follows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from har_stream.service import metrics

log = logging.getLogger(__name__)


def connection_count(client: Any) -> float | None:
    """Open broker connections of a kafka-python client; None when it cannot tell."""
    try:
        groups = client.metrics()
    except Exception:  # a client without metrics, or one being closed
        return None
    counts = [v["connection-count"] for v in groups.values()
              if isinstance(v, dict) and "connection-count" in v]
    return sum(counts) if counts else None


class BrokerWatch:
    """Tracks reachability of the cluster through one client (see the module doc)."""

    def __init__(self, client: Any, address: str, clock: Callable[[], float] = time.monotonic,
                 every_s: float = 0.5, grace_s: float = 1.0, remind_s: float = 60.0) -> None:
        self.client = client
        self.address = address
        self.clock = clock
        self.every_s, self.grace_s, self.remind_s = every_s, grace_s, remind_s
        self.up = True
        now = clock()
        self._last_connected = now
        self._next_check = now
        self._down_since = 0.0
        self._next_reminder = 0.0
        self._seen_since: float | None = None  # connections seen again while down, since

    def check(self, force: bool = False) -> bool:
        """Look at the client (rate-limited unless `force`); True while the cluster is reachable."""
        now = self.clock()
        if now < self._next_check and not force:
            return self.up
        self._next_check = now + self.every_s
        count = connection_count(self.client)
        if count is None:
            return self.up
        if count > 0:
            self._last_connected = now
            if self.up or (self._seen_since is not None
                           and now - self._seen_since >= self.every_s):
                self.connected()
            elif self._seen_since is None:
                self._seen_since = now
        else:
            self._seen_since = None
            if now - self._last_connected > self.grace_s:
                self.lost("no open connection to any broker")
        return self.up

    def connected(self) -> None:
        self._seen_since = None
        if not self.up:
            log.info("connected to Kafka at %s again after %.1f s; resuming", self.address,
                     self.clock() - self._down_since)
        self.up = True
        metrics.BROKER_UP.set(1)

    def lost(self, why: str) -> None:
        now = self.clock()
        if self.up:
            self.up = False
            self._down_since = now
            self._next_reminder = now + self.remind_s
            log.warning("lost the connection to Kafka at %s (%s): the client reconnects by "
                        "itself; nothing is committed until every result is acknowledged",
                        self.address, why)
        elif now >= self._next_reminder:
            self._next_reminder = now + self.remind_s
            log.warning("still no connection to Kafka at %s after %.0f s (%s)", self.address,
                        now - self._down_since, why)
        metrics.BROKER_UP.set(0)


def topic_id(client: Any, topic: str) -> object | None:
    """The id a consumer's cluster metadata holds for `topic`; None when unknown.

    kafka-python keeps topic ids (Kafka ≥ 2.8 metadata) in its cluster object, which the
    consumer does not expose publicly (`_cluster`); the librdkafka adapter has `topic_id`;
    a client with neither yields None.
    """
    lookup = getattr(client, "topic_id", None) or getattr(
        getattr(client, "_cluster", None), "topic_id", None)
    return lookup(topic) if callable(lookup) else None


class TopicIdentity:
    """Notices that a topic was deleted and created again while the service runs.

    The new topic's offsets start again at 0, so the consumer's positions, the committed
    offsets, the replay guards and the device state of the old topic would skip or misplace
    its messages. Kafka gives every topic a new id when it is created; `changed` compares
    the id known now with the first one seen. After an outage the cached metadata may still
    be the old cluster's: `refresh` asks the cluster first (the consumer's public `topics()`,
    one blocking metadata request).
    """

    def __init__(self, client: Any, topic: str) -> None:
        self.client = client
        self.topic = topic
        self.first: object | None = None

    def changed(self, refresh: bool = False) -> str | None:
        """A description of the change, or None while the topic is the one first seen."""
        if refresh:
            try:
                self.client.topics()
            except Exception as exc:  # the cluster went away again: the next outage's turn
                log.info("could not refresh the metadata of %s: %s", self.topic, exc)
        now = topic_id(self.client, self.topic)
        if now is None:
            return None
        if self.first is None:
            self.first = now
        elif now != self.first:
            return f"topic {self.topic} was recreated (id {self.first} is now {now})"
        return None
