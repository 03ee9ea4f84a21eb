"""Rebalance events: recorded where the consumer reports them, applied by the loop at one point.

A driver may run the listener on its own IO thread (kafka-python), where blocking work
(reading the changelog) would stall heartbeats, or inside `poll` (librdkafka, memory); either
way the listener only records what happened, and `Service` applies the changes between
polls, before touching any message (`ports.RebalanceListener`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from har_stream.kafka.ports import Partition


class RebalanceEvents:
    """The service's `ports.RebalanceListener` (see the module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[str, frozenset[int]]] = []

    def _add(self, kind: str, partitions: Iterable[Partition]) -> None:
        with self._lock:
            self._events.append((kind, frozenset(tp.partition for tp in partitions)))

    def on_partitions_revoked(self, partitions: list[Partition]) -> None:
        self._add("revoked", partitions)

    def on_partitions_assigned(self, partitions: list[Partition]) -> None:
        self._add("assigned", partitions)

    def on_partitions_lost(self, partitions: list[Partition]) -> None:
        self._add("lost", partitions)

    def emptied(self) -> bool:
        """Whether a pending assignment leaves this member without partitions (also what a
        deleted sensor topic causes: the loop then checks that it still exists)."""
        with self._lock:
            return any(kind == "assigned" and not partitions
                       for kind, partitions in self._events)

    def drain(self) -> list[tuple[str, frozenset[int]]]:
        with self._lock:
            events, self._events = self._events, []
        return events
