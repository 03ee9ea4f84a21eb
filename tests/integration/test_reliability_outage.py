"""Broker outages in the middle of a run, with a real `har-stream run` process.

1. The broker becomes unreachable and comes back with its data, as a Kafka broker restarting
   or a network partition healing: the connection is cut by a relay in front of the broker
   (which advertises the relay's address, so every client connection goes through it). The
   recognizer must stay up without spinning (CPU measured while the broker is away), report
   `har_broker_connected 0` and say so in its log in a few lines, hold what it has not
   delivered, and when the broker is back resume by itself: results and counts exactly those
   of an uninterrupted run.
2. The embedded in-memory broker is stopped and started again on the same port: it comes back
   empty (topics, offsets, producer ids and all data gone). The recognizer survives the
   outage; when the empty broker answers it stops once with a clear error (exit 1: its
   producer's identity is unknown to the new broker) or carries on, and after at most one
   restart (what a supervisor does) data sent to the new broker is processed exactly.
docs/RELIABILITY.md explains what happens to in-flight data in each case.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest
from network_support import AdvertisingBroker, Relay
from service_support import (
    FakeModel,
    Service,
    TopicReader,
    batches_of,
    check_results,
    completion,
    create_topics,
    final_counts,
    interleave,
    offline_results,
    send_batches,
    service_args,
    start_service,
    synthetic_samples,
    topic_settings,
    unique,
    wait_for,
    window_ids,
)

from har_stream.bench.measure import cpu_seconds
from har_stream.service.settings import KafkaSettings, Settings
from har_stream.tools.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000
OUTAGE_S = 4.0


def _settings(bootstrap: str, metrics_port: int) -> Settings:
    return Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap, connect_timeout_s=10),
                    topics=topic_settings(), group_id=unique("group"), session_timeout_ms=6000,
                    heartbeat_interval_ms=1000, poll_timeout_ms=100, commit_interval_s=0.2,
                    max_poll_records=20, produce_timeout_s=2.0,
                    metrics_address=f"127.0.0.1:{metrics_port}")


def _start(settings: Settings, log_path: Path) -> Service:
    return start_service([*service_args(settings), "--model", "service_support:fake_model"],
                         log_path)


def _gauge(port: int, name: str = "har_broker_connected") -> float | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return None
    found = re.search(rf"^{name} (\S+)$", text.decode(), re.MULTILINE)
    return float(found.group(1)) if found else None


def _streams(prefix: str, devices: int, seed: int) -> dict:
    return {f"{prefix}-{i}": synthetic_samples(2000, seed=seed + i) for i in range(devices)}


def test_a_broker_that_comes_back_with_its_data_is_resumed_exactly(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    broker = AdvertisingBroker(advertised_port=port)
    relay = Relay(broker.port, port)
    settings = _settings(f"127.0.0.1:{port}", metrics_port)
    create_topics(settings)
    streams = _streams("out", 4, seed=900)
    expected = offline_results(FakeModel(), streams, T0_MS)
    batches = interleave({d: batches_of(d, s, 25, T0_MS) for d, s in streams.items()})
    half = len(batches) // 2
    send_batches(settings.kafka, settings.topics.sensor_topic, batches[:half])
    service = _start(settings, tmp_path / "service.log")
    results = counts = None
    try:
        results = TopicReader(settings.kafka, settings.topics.activity_topic)
        results.until(lambda r: len(r) > 10, 60, "first results")
        relay.cut()  # mid-stream: output in flight, input not all consumed
        lines_before = len(service.log().splitlines())
        wait_for(lambda: _gauge(metrics_port) == 0, 10, "har_broker_connected 0")
        cpu_start, wall_start = cpu_seconds(service.process.pid), time.monotonic()
        time.sleep(OUTAGE_S)
        cpu = (cpu_seconds(service.process.pid) - cpu_start) / (time.monotonic() - wall_start)
        assert service.process.poll() is None, service.log()[-3000:]
        assert _gauge(metrics_port) == 0
        outage_log = service.log().splitlines()[lines_before:]
        relay.restore()
        wait_for(lambda: _gauge(metrics_port) == 1, 30, "har_broker_connected 1 again")
        send_batches(settings.kafka, settings.topics.sensor_topic, batches[half:])
        results.until(lambda r: window_ids(r) >= set(expected.results), 90, "every result",
                      check=lambda: _alive(service),
                      explain=lambda r: completion(r, expected))
        counts = TopicReader(settings.kafka, settings.topics.counts_topic)
        counts.until(lambda r: final_counts(r) == expected.counts, 30, "exact counts")
        duplicates = check_results(results.poll(), expected)
    finally:
        code = service.terminate() if service.process.poll() is None else service.process.poll()
        for reader in (results, counts):
            if reader is not None:
                reader.close()
        relay.close()
        broker.stop()
    log = service.log()
    assert code == 0, log[-3000:]
    assert cpu < 0.5, f"{cpu:.0%} of a core while the broker was away: a busy loop"
    assert any(f"lost the connection to Kafka at 127.0.0.1:{port}" in line
               for line in outage_log)
    assert len(outage_log) < 60, "\n".join(outage_log)  # the client's retries are thinned
    reconnected = re.search(r"connected to Kafka at \S+ again after ([\d.]+) s", log)
    assert reconnected, log[-3000:]
    print(f"\noutage {OUTAGE_S:g} s: recognizer CPU {cpu:.1%} of a core, {len(outage_log)} log "
          f"lines, reconnected after {reconnected.group(1)} s (from the loss); "
          f"{len(expected.results)} windows, 0 lost, 0 changed, {duplicates} duplicates")


def _alive(service: Service) -> None:
    assert service.process.poll() is None, service.log()[-3000:]


def test_the_in_memory_broker_restarted_empty_needs_at_most_one_restart(
        tmp_path: Path) -> None:
    metrics_port = free_port()
    broker = EmbeddedBroker().start()
    settings = _settings(broker.bootstrap_servers, metrics_port)
    create_topics(settings)
    before = _streams("lost", 2, seed=950)
    send_batches(settings.kafka, settings.topics.sensor_topic,
                 interleave({d: batches_of(d, s, 25, T0_MS) for d, s in before.items()}))
    lives = [_start(settings, tmp_path / "life-0.log")]
    second = None
    try:
        first = TopicReader(settings.kafka, settings.topics.activity_topic)
        first.until(lambda r: len(r) > 5, 60, "first results")
        first.close()
        broker.stop()
        wait_for(lambda: _gauge(metrics_port) == 0, 10, "har_broker_connected 0")
        time.sleep(2)
        _alive(lives[0])
        broker = EmbeddedBroker(port=broker.port).start()  # same address, nothing in it
        create_topics(settings)  # as the operator (or the compose `topics` job) would
        after = _streams("new", 3, seed=970)
        expected = offline_results(FakeModel(), after, T0_MS)
        second = TopicReader(settings.kafka, settings.topics.activity_topic)
        send_batches(settings.kafka, settings.topics.sensor_topic,
                     interleave({d: batches_of(d, s, 25, T0_MS) for d, s in after.items()}))

        def supervise() -> None:  # what compose's `restart: unless-stopped` does, once
            if lives[-1].process.poll() is not None:
                assert len(lives) == 1, "a second exit: a crash loop"
                lives.append(_start(settings, tmp_path / f"life-{len(lives)}.log"))

        second.until(lambda r: window_ids(r) >= set(expected.results), 120, "new results",
                     check=supervise, explain=lambda r: completion(r, expected))
        records = [r for r in second.poll() if r.key.startswith(b"new-")]
        check_results(records, expected)
    finally:
        if second is not None:
            second.close()
        codes = [life.terminate() if life.process.poll() is None else life.process.poll()
                 for life in lives]
        broker.stop()
    assert len(lives) <= 2 and codes[-1] == 0, [life.log()[-2000:] for life in lives]
    if len(lives) == 2:
        assert codes[0] == 1 and "stopping without committing further" in lives[0].log()
    print(f"\nin-memory broker restarted empty: {len(lives) - 1} restart(s) of the recognizer "
          f"(exit codes {codes}); data sent after it: {len(expected.results)} windows exact")
