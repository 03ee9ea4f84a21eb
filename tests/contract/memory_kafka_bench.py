"""How fast and lean the in-memory cluster is at the reliability tests' volume (a script that
prints numbers; no test asserts on time).

    PYTHONPATH=. python tests/contract/memory_kafka_bench.py [devices]

One keyed sensor record per device into 8 partitions, read back by a group member that
commits after every poll (max 500 records); results to a topic that only counts; two
snapshots per device into a compacted changelog, read back from its beginning.
"""

from __future__ import annotations

import resource
import sys
import time

from har_stream.kafka.drivers.memory import MemoryCluster
from har_stream.kafka.ports import Partition

PARTITIONS = 8


def main(devices: int) -> None:
    cluster = MemoryCluster(waits=False)
    cluster.create_topic("sensor", PARTITIONS)
    cluster.create_topic("activity", PARTITIONS, retain=False)
    cluster.create_topic("changelog", PARTITIONS, configs={"cleanup.policy": "compact"})
    producer = cluster.producer()
    keys = [f"device-{n:06d}".encode() for n in range(devices)]
    value = b"x" * 200
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def timed(what: str, count: int, work: object) -> None:
        start = time.perf_counter()
        work()  # type: ignore[operator]
        took = time.perf_counter() - start
        print(f"{what:<52} {count:>9,} in {took:6.2f} s  {count / took:>11,.0f} /s")

    def produce(topic: str, rounds: int = 1) -> None:
        for _ in range(rounds):
            for key in keys:
                producer.send(topic, key=key, value=value)
        producer.flush()

    def consume_group() -> None:
        member = cluster.consumer("service")
        member.subscribe(["sensor"])
        seen = 0
        while seen < devices:
            polled = member.poll(max_records=500)
            seen += sum(len(records) for records in polled.values())
            member.commit({p: records[-1].offset + 1 for p, records in polled.items()})
            for records in polled.values():  # the service answers each record
                for record in records:
                    producer.send("activity", key=record.key, value=b"walking")
            producer.serve()

    def read_changelog() -> None:
        reader = cluster.consumer()
        reader.assign([Partition("changelog", p) for p in range(PARTITIONS)])
        seen = 0
        while seen < devices:
            seen += sum(len(records) for records in reader.poll(max_records=500).values())

    timed("send keyed sensor records (murmur2), flush", devices, lambda: produce("sensor"))
    timed("group member: poll 500, commit, send a result each", devices, consume_group)
    timed("send 2 snapshots per device to a compacted topic", 2 * devices,
          lambda: produce("changelog", rounds=2))
    timed("read the compacted changelog from its beginning", devices, read_changelog)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS growth: {(rss_after - rss_before) / 1024:.0f} MiB "
          f"(stored: {cluster.count('sensor') + devices:,} records, "
          f"counted only: {cluster.count('activity'):,})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
