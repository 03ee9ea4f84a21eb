"""Hostile values stay harmless: log lines cannot be forged, dead-letter headers are short
printable ASCII, device ids never become metric labels, and the limits hold (message size,
samples per message, devices per process, per-device rate)."""

from __future__ import annotations

import logging
import re

import orjson
import pytest
from prometheus_client import generate_latest
from reliability_support import Clock, Harness, Message
from service_support import batches_of, synthetic_samples

from har_stream.core import codec
from har_stream.core.logsafe import RepeatFilter, SecretFilter, escape
from har_stream.core.records import SensorBatch
from har_stream.service import metrics
from har_stream.service.guards import RateGuard
from har_stream.service.settings import Settings, TopicSettings

TOPICS = TopicSettings(sensor_topic="in", dlq_topic="dlq", activity_topic="out",
                       counts_topic="counts", changelog_topic="log")
SETTINGS = Settings(topics=TOPICS, commit_interval_s=0, idle_ttl_s=0, metrics_address="")
HOSTILE_IDS = ["evil\nINFO har_stream.service.loop: all good",
               "\x1b[2J\x1b[31mred", "rtl\u202eexe.txt",
               "a" * 5000, "tab\there", "nul\x00byte", "\r\noverwrite", "{\"json\": 1}"]
LINE = re.compile(r"^[\x20-\x7e]*$")


def hostile_messages() -> list[Message]:
    """Messages whose device id, key or headers carry log-forging text."""
    good = batches_of("x", synthetic_samples(50, seed=1), 50)[0]
    body = orjson.loads(codec.encode_sensor(good))
    records = []
    for i, device_id in enumerate(HOSTILE_IDS):
        value = orjson.dumps(body | {"device_id": device_id})
        records.append(Message(device_id.encode(), value, i % 2,
                               [(f"h\n{i}", b"\x1b[0m\n")]))
    return records


def test_hostile_values_never_forge_a_log_line_or_a_header(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(SETTINGS)
    h.feed(hostile_messages())
    with caplog.at_level(logging.DEBUG, logger="har_stream"):
        h.drain()
    assert len(h.sent("dlq")) == len(HOSTILE_IDS)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("har_stream")]
    assert any("rejected in[" in line for line in lines)
    for line in lines:
        assert LINE.match(line) and len(line) < 600, repr(line)
    for letter in h.sent("dlq"):
        for name, value in letter.headers or []:
            if name.startswith("har."):
                assert LINE.match(value.decode("ascii")) and len(value) <= 300


def test_device_ids_never_become_metric_labels() -> None:
    h = Harness(SETTINGS)
    devices = [f"watch-{i:04d}" for i in range(30)]
    for i, device_id in enumerate(devices):
        h.feed(Message(device_id.encode(), codec.encode_sensor(b), i % 8)
               for b in batches_of(device_id, synthetic_samples(300, seed=i), 100))
    h.feed(hostile_messages())
    h.drain()
    exposition = generate_latest(metrics.REGISTRY).decode()
    assert "har_windows_classified_total{activity=" in exposition
    for device_id in devices + ["evil", "rtl", "overwrite"]:
        assert device_id not in exposition
    labels = set(re.findall(r"[{,](\w+)=", exposition))
    assert labels <= {"reason", "event", "activity", "topic", "stage", "partition", "le",
                      "version", "engine", "python", "kind"}, labels


def test_escape_makes_one_short_printable_line() -> None:
    assert escape("plain id-1") == "plain id-1"
    assert escape("a\nb\x1b[0m") == "a\\x0ab\\x1b[0m"
    assert escape("rtl\u202e") == "rtl\\u202e" and escape("\U0001f600") == "\\U0001f600"
    long = escape("z" * 10_000, limit=50)
    assert long.startswith("z" * 20) and "(10000 characters)" in long and len(long) <= 50
    hostile = escape("\u202e" * 1000, limit=300)  # escaping never makes it longer than said
    assert len(hostile) <= 300 and hostile.isascii() and hostile.isprintable()


def test_repeated_client_warnings_are_thinned_with_a_count() -> None:
    clock = Clock(0.0)
    thinning = RepeatFilter("kafka", period_s=30.0, clock=clock)

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, (), None)

    passed = []
    for _ in range(100):  # 10 s of a warning every 0.1 s
        clock.now += 0.1
        r = record("kafka.cluster", "No node available for metadata refresh")
        if thinning.filter(r):
            passed.append(r.getMessage())
    assert passed == ["No node available for metadata refresh"]
    clock.now += 30
    r = record("kafka.cluster", "No node available for metadata refresh")
    assert thinning.filter(r) and "(99 similar messages" in r.getMessage()
    assert all(thinning.filter(record("har_stream.service.loop", "x")) for _ in range(5))


def test_secret_values_are_masked_whoever_logs_them() -> None:
    masking = SecretFilter(["hunter2", None, ""])
    r = logging.LogRecord("kafka.admin", logging.DEBUG, __file__, 1, "config: %s",
                          ({"sasl_plain_password": "hunter2"},), None)
    assert masking.filter(r) and r.getMessage() == "config: {'sasl_plain_password': '***'}"


def test_message_size_and_samples_per_message_limits_are_configurable() -> None:
    from dataclasses import replace

    settings = replace(SETTINGS, max_message_bytes=4000, max_samples_per_message=40)
    h = Harness(settings)
    samples = synthetic_samples(200, seed=4)
    big = SensorBatch("dev", 0, 1_700_000_000_000, samples)
    many = SensorBatch("dev", 0, 1_700_000_000_000, samples[:50])
    h.feed([Message(b"dev", codec.encode_sensor(big)), Message(b"dev", codec.encode_sensor(many))])
    h.service.step()
    h.service.checkpoint()
    reasons = [dict(r.headers or [])[codec.HEADER_REASON] for r in h.sent("dlq")]
    assert reasons == [b"message_too_large", b"too_many_samples"]


def test_a_device_far_above_50_hz_is_flagged_once_per_period(
        caplog: pytest.LogCaptureFixture) -> None:
    guard = RateGuard(50.0, factor=4.0, burst_samples=500, flag_period_s=60.0)
    before = metrics.REGISTRY.get_sample_value("har_devices_rate_flagged_total") or 0.0
    t = 1_700_000_000_000
    for i in range(600):  # a real device: 50 samples a second, on the broker clock
        assert not guard.observe("honest", 50, t + i * 1000)
    flags = [guard.observe("flood", 500, t + i * 100) for i in range(1200)]  # 5000 Hz, 120 s
    assert flags.count(True) == 2  # once per minute
    assert not guard.observe("flood", 500, 0), "no broker timestamp: not judged"
    with caplog.at_level(logging.WARNING, logger="har_stream.service.guards"):
        assert guard.report() == ["flood"] * flags.count(True)
    assert "rate_exceeded" in caplog.text and "faster than 200 Hz" in caplog.text
    after = metrics.REGISTRY.get_sample_value("har_devices_rate_flagged_total")
    assert after == before + flags.count(True)
    guard.prune(keep=set())
    assert not guard._buckets
