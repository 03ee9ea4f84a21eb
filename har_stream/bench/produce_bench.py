"""Producing through the embedded broker: CPU per record of each output client, side by side.

Why: with kafka-python, producing was most of the service's CPU per sensor message
(docs/PERFORMANCE.md §4). Each round sends the same records with each client through the
service's own `make_producer` (acks=all, the service's linger) and waits for every
acknowledgement; clients alternate round by round so both see the same machine load.
CPU is the process's (`time.process_time`), which counts the clients' own threads.
"""

from __future__ import annotations

import dataclasses

from har_stream.bench.measure import Timings, load
from har_stream.bench.report import provenance, table, write_section
from har_stream.service.settings import PRODUCER_CLIENTS, KafkaSettings, TopicSettings

SIZES = {"result or counts (350 B)": 350, "state snapshot (5.4 KB)": 5400}


def produce_round(kafka: KafkaSettings, topic: str, records: int, size: int) -> Timings:
    """One client sends `records` keyed records of `size` bytes and waits for all acks."""
    from har_stream.kafka.clients import make_producer

    producer = make_producer(kafka, linger_ms=5)
    value = b"x" * size
    keys = [f"device-{i % 1000}".encode() for i in range(records)]
    timings = Timings()
    try:
        producer.partitions_for(topic)
        producer.send(topic, key=b"warm-up", value=value)
        producer.flush(30)

        def send_all() -> None:
            for key in keys:
                producer.send(topic, key=key, value=value)
            producer.flush(60)

        timings.run(send_all)
    finally:
        producer.close(10)
    return timings


def main(write: bool = False, quick: bool = False) -> None:
    from har_stream.kafka.clients import close_quietly, make_admin, prepare_service_topics
    from har_stream.tools.broker import EmbeddedBroker

    records, rounds = (1000, 1) if quick else (5000, 3)
    before = load()
    cells: dict[tuple[str, str], Timings] = {}
    with EmbeddedBroker() as broker:
        base = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
        topics = TopicSettings()
        admin = make_admin(base)
        try:
            prepare_service_topics(admin, topics)
        finally:
            close_quietly(admin)
        for _ in range(rounds):
            for label, size in SIZES.items():
                for client in PRODUCER_CLIENTS:
                    kafka = dataclasses.replace(base, producer_client=client)
                    timings = produce_round(kafka, topics.activity_topic, records, size)
                    cells.setdefault((label, client), Timings()).add(timings)
    rows = []
    for label in SIZES:
        rdkafka, python = cells[(label, "librdkafka")], cells[(label, "kafka-python")]
        rows.append([label,
                     f"{1e6 * python.cpu_median / records:.1f}",
                     f"{1e6 * rdkafka.cpu_median / records:.1f}",
                     f"{python.cpu_median / rdkafka.cpu_median:.1f}×",
                     f"{records / python.wall_median:,.0f}",
                     f"{records / rdkafka.wall_median:,.0f}"])
    text = table(["record", "kafka-python µs CPU/record", "librdkafka µs CPU/record",
                  "CPU ratio", "kafka-python records/s (wall)", "librdkafka records/s (wall)"],
                 rows)
    print(text)
    if write:
        body = (f"{provenance('har-stream bench produce --write')}\n"
                f"Machine shared: {before} at the start, {load()} at the end.\n\n"
                f"Each cell: median over {rounds} rounds of {records:,} keyed records sent "
                "through `make_producer` (acks=all, linger 5 ms) to the embedded broker and "
                "flushed, the two clients alternating; CPU of the whole process, the clients' "
                "threads included. The service produces with librdkafka by default "
                "(`--producer-client`).\n\n" + text)
        write_section("Produce", body)
