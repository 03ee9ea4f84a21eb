"""Is the cluster reachable? One answer for the metric, the logs and the loop.

The Kafka client retries on its own when the brokers go away, so the loop sees nothing but
empty polls; without this watch the service would look healthy while doing nothing. The
signal is whether the consumer holds a connection to any broker (`ports.Consumer.connected`),
read at most every `every_s`: the consumer always keeps a connection to its group
coordinator, so none for longer than `grace_s` means the cluster is out of reach. The way
back needs a connection on two checks `every_s` apart: a connection still being attempted
may count, and a refused connect closes it again. Transitions are logged once, with
the time they took, and a reminder follows every `remind_s` while the outage lasts;
`har_broker_connected` follows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from har_stream.kafka.ports import Consumer, KafkaFailure
from har_stream.service import metrics

log = logging.getLogger(__name__)


class BrokerWatch:
    """Tracks reachability of the cluster through one client (see the module doc)."""

    def __init__(self, client: Consumer, address: str, clock: Callable[[], float] = time.monotonic,
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
        connected = self.client.connected()
        if connected is None:
            return self.up
        if connected:
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


class TopicIdentity:
    """Notices that a topic was deleted, or deleted and created again, while the service runs.

    The new topic's offsets start again at 0, so the consumer's positions, the committed
    offsets, the replay guards and the device state of the old topic would skip or misplace
    its messages. Kafka gives every topic a new id when it is created; `changed` compares
    the id known now with the first one seen. A topic the cluster no longer lists is a
    change too: a broker that came back empty, where nobody created the topics again (the
    service's clients never create topics by asking for them, so it stays missing until a
    restart creates it with the configured layout). The cached metadata may still be the old
    cluster's: `refresh` asks the cluster first (`ports.Consumer.topics`, one blocking
    metadata request), which the loop does when the cluster is back after an outage
    and when a rebalance leaves it without partitions (what a deleted topic causes).
    """

    def __init__(self, client: Consumer, topic: str) -> None:
        self.client = client
        self.topic = topic
        self.first: str | None = None

    def changed(self, refresh: bool = False) -> str | None:
        """A description of the change, or None while the topic is the one first seen."""
        names = None
        if refresh:
            try:
                names = self.client.topics()
            except KafkaFailure as exc:  # the cluster went away again: the next outage's turn
                log.info("could not refresh the metadata of %s: %s", self.topic, exc)
        if self.first is not None and names is not None and self.topic not in names:
            return f"topic {self.topic} no longer exists (it had id {self.first})"
        now = self.client.topic_id(self.topic)
        if now is None:
            return None
        if self.first is None:
            self.first = now
        elif now != self.first:
            return f"topic {self.topic} was recreated (id {self.first} is now {now})"
        return None
