"""The embedded broker's cost per fetch against the batches stored in the partition it reads.

Why: at a constant load the end-to-end rig's latency drifted upwards while the broker's CPU
rose (`har-stream bench drift`). This measures the cause alone. One partition is filled with
one-record batches, level by level; at each level a consumer fetches the last record of that
partition again and again for a few seconds and, side by side, the only record of a partition
that holds one batch. Reported: fetches per second and the broker's CPU per fetch (from
/proc), and the broker's CPU per produced batch while filling (which does not grow).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from har_stream.bench.measure import cpu_seconds, load
from har_stream.bench.report import provenance, table, write_section
from har_stream.kafka.ports import Consumer, Partition

LEVELS = (10, 1_000, 5_000, 20_000)
QUICK_LEVELS = (10, 300)
FETCH_S = 2.0
QUICK_FETCH_S = 0.5
GROWN, SMALL = "grown", "one-batch"


@dataclass(frozen=True, slots=True)
class Fetches:
    per_s: float
    cpu_ms: float  # broker CPU per fetch


@dataclass(frozen=True, slots=True)
class Level:
    batches: int  # stored in the grown partition
    grown: Fetches
    small: Fetches
    produce_cpu_us: float  # broker CPU per batch produced to reach this level


def repeat_fetch(consumer: Consumer, broker_pid: int, topic: str, offset: int,
                 seconds: float) -> Fetches:
    """Fetch the record at `offset` of partition 0 of `topic` over and over for `seconds`."""
    partition = Partition(topic, 0)
    consumer.assign([partition])
    fetches, cpu_before, started = 0, cpu_seconds(broker_pid), time.monotonic()
    while time.monotonic() - started < seconds:
        consumer.seek(partition, offset)
        fetches += bool(consumer.poll(timeout_ms=1000, max_records=1))
    elapsed, cpu = time.monotonic() - started, cpu_seconds(broker_pid) - cpu_before
    return Fetches(fetches / elapsed, 1e3 * cpu / max(fetches, 1))


def measure(levels: tuple[int, ...], fetch_s: float) -> list[Level]:
    """Fill one partition to each level in turn and measure fetches at its tail there."""
    from har_stream.kafka.clients import (
        close_quietly,
        ensure_topics,
        make_admin,
        make_consumer,
        make_producer,
    )
    from har_stream.kafka.ports import TopicLayout
    from har_stream.kafka.settings import KafkaSettings
    from har_stream.tools.broker import EmbeddedBroker

    results = []
    with EmbeddedBroker() as broker:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers,
                              producer_client="kafka-python",
                              consumer_client="kafka-python")
        admin = make_admin(kafka)
        producer = make_producer(kafka, linger_ms=0)
        consumer = make_consumer(kafka, None)
        try:
            ensure_topics(admin, {GROWN: TopicLayout(1), SMALL: TopicLayout(1)})
            producer.send(SMALL, value=b"x" * 100).get(timeout_s=30)
            stored = 0
            for level in levels:
                cpu_before = cpu_seconds(broker.pid)
                for _ in range(level - stored):  # each acknowledged alone: its own batch
                    producer.send(GROWN, value=b"x" * 100).get(timeout_s=30)
                produce_us = 1e6 * (cpu_seconds(broker.pid) - cpu_before) / (level - stored)
                stored = level
                results.append(Level(
                    level, repeat_fetch(consumer, broker.pid, GROWN, level - 1, fetch_s),
                    repeat_fetch(consumer, broker.pid, SMALL, 0, fetch_s), produce_us))
                print(results[-1], flush=True)
        finally:
            close_quietly(consumer, producer, admin)
    return results


def levels_table(levels: list[Level]) -> str:
    return table(["batches stored in the partition read",
                  "fetches/s: that partition / a one-batch partition",
                  "broker CPU ms per fetch: that partition / a one-batch partition",
                  "broker CPU µs per batch produced"],
                 [[f"{lv.batches:,}", f"{lv.grown.per_s:,.0f} / {lv.small.per_s:,.0f}",
                   f"{lv.grown.cpu_ms:.2f} / {lv.small.cpu_ms:.2f}",
                   f"{lv.produce_cpu_us:,.0f}"] for lv in levels])


def main(write: bool = False, quick: bool = False) -> None:
    before = load()
    levels = measure(QUICK_LEVELS if quick else LEVELS, QUICK_FETCH_S if quick else FETCH_S)
    text = levels_table(levels)
    print(text)
    if write:
        body = (f"{provenance('har-stream bench broker --write')}\n"
                f"Machine shared: {before} at the start, {load()} at the end.\n\n"
                "The embedded broker (tansu, in memory) alone: one partition filled with "
                "one-record batches (kafka-python, linger 0, each send acknowledged before "
                "the next), level by level; at each level a kafka-python consumer fetches the "
                f"partition's last record again and again for {FETCH_S:.0f} s, then, side by "
                "side, the only record of a partition holding one batch. CPU is the broker "
                "process's, from /proc. Producers send one batch per partition per linger "
                "period, so a partition's batches grow with time and with the partitions a "
                "topic is spread over.\n\n" + text)
        write_section("The embedded broker's cost per fetch", body)
