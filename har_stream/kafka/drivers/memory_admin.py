"""The admin port of the in-memory cluster (`memory.py` has the cluster and its controls)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from har_stream.kafka.drivers.errors import INVALID_PARTITIONS
from har_stream.kafka.drivers.memory_log import Topic
from har_stream.kafka.drivers.memory_state import ClusterState
from har_stream.kafka.ports import KafkaFailure, TopicLayout


class MemoryAdmin:
    """The admin port over a `ClusterState`."""

    def __init__(self, cluster: ClusterState) -> None:
        self.cluster = cluster

    def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        with self.cluster.lock:
            self.cluster.check_reachable("partition counts")
            known = self.cluster.topics
            return {t: len(known[t].logs) for t in topics if t in known}

    def create_topics(self, layouts: Mapping[str, TopicLayout]) -> set[str]:
        cluster = self.cluster
        with cluster.lock:
            cluster.check_reachable("create topics")
            created = set()
            for name, layout in layouts.items():
                if name in cluster.topics:
                    continue
                if layout.partitions < 1:
                    raise KafkaFailure(f"topic {name!r}: {layout.partitions} partitions",
                                       code=INVALID_PARTITIONS)
                cluster.topics[name] = Topic(name, layout)
                created.add(name)
                cluster.rebalance_subscribers(name)
            cluster.notify()
            return created

    def delete_topics(self, topics: Iterable[str]) -> None:
        cluster = self.cluster
        with cluster.lock:
            cluster.check_reachable("delete topics")
            for name in topics:
                cluster.topic(name)  # TopicMissing for an unknown one, as Kafka answers
                del cluster.topics[name]
                for group in cluster.groups.values():
                    for gone in [p for p in group.committed if p.topic == name]:
                        del group.committed[gone]
                for gone_record in [k for k in cluster.damaged if k[0] == name]:
                    del cluster.damaged[gone_record]
                cluster.rebalance_subscribers(name)
            cluster.notify()

    def close(self) -> None:
        pass
