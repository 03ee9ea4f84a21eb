"""The subscriber client against the real broker: typed, de-duplicated records; the guide runs."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from service_support import unique

from har_stream.client import (
    ActivityChange,
    ActivityCounts,
    ActivityResult,
    DayTotals,
    DeviceStatus,
    subscribe,
)
from har_stream.core.codec import encode_counts, encode_result
from har_stream.core.outputs_codec import encode_change, encode_day, encode_device

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
T0 = 1_796_515_200_000  # 2026-12-06T00:00Z
TODAY = DayTotals("w-1", "2026-12-06", T0, 0, {"WALKING": 3, "SITTING": 1}, T0, T0 + 6380, 192,
                  False)
YESTERDAY = DayTotals("w-1", "2026-12-05", T0 - 86_400_000, 0, {"WALKING": 0, "SITTING": 2812},
                      T0 - 3_600_000, T0 - 1000, 10,
                      True)
CHANGE = ActivityChange("w-1", "SITTING", "WALKING", T0 + 1280, T0 + 6380, 0.93, 192, 2)
DEVICE = DeviceStatus("w-1", "WALKING", T0 + 1280, 0.93, "WALKING", 0.93, 192, T0 + 6380, TODAY)
RESULT = ActivityResult("w-1", 192, T0 + 3840, T0 + 6380, "WALKING", 0.93,
                        {"WALKING": 0.93, "SITTING": 0.07}, "m-1")
COUNTS = ActivityCounts("w-1", {"WALKING": 3, "SITTING": 1}, {"WALKING": 3.84, "SITTING": 1.28},
                        T0, T0 + 6380, 192)


def create(bootstrap: str, names: list[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for name in names:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, 2, 1)])
    finally:
        admin.close()


def produce(bootstrap: str, records: list[tuple[str, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for topic, value in records:
            producer.send(topic, key=b"w-1", value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


def test_subscribe_yields_every_kind_typed_and_once(broker: object) -> None:
    bootstrap = broker.bootstrap_servers  # type: ignore[attr-defined]
    tag = unique("client")
    kinds = {f"results.{tag}": "results", f"counts.{tag}": "counts",
             f"changes.{tag}": "changes", f"devices.{tag}": "devices", f"daily.{tag}": "daily"}
    create(bootstrap, list(kinds))
    topic = {kind: name for name, kind in kinds.items()}
    sent = [(topic["results"], encode_result(RESULT)), (topic["counts"], encode_counts(COUNTS)),
            (topic["changes"], encode_change(CHANGE)), (topic["devices"], encode_device(DEVICE)),
            (topic["daily"], encode_day(YESTERDAY)), (topic["changes"], b"not a change")]
    produce(bootstrap, sent + sent[:5])  # every record delivered twice, as after a crash
    with subscribe(bootstrap, topics=kinds, group=unique("group"), idle_timeout_s=4.0) as records:
        got = list(records)
    assert sorted(got, key=lambda r: type(r).__name__) == [
        CHANGE, COUNTS, RESULT, YESTERDAY, DEVICE]
    assert (records.received, records.rejected, records.duplicates) == (11, 1, 5)


def guide_example() -> str:
    text = (REPO / "docs" / "CLIENT.md").read_text()
    section = text.split("## Example", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/CLIENT.md has no python example"
    return match.group(1)


def test_the_client_guide_example_runs_as_written(broker: object, tmp_path: Path) -> None:
    bootstrap = broker.bootstrap_servers  # type: ignore[attr-defined]
    device = unique("guide")
    change = ActivityChange(device, "SITTING", "WALKING", T0 + 1280, T0 + 6380, 0.93, 192, 2)
    status = DeviceStatus(device, "WALKING", T0 + 1280, 0.93, "WALKING", 0.93, 192, T0 + 6380,
                          None)
    day = DayTotals(device, "2026-12-05", T0 - 86_400_000, 0, {"SITTING": 2812},
                    T0 - 3_600_000, T0 - 1000, 10, True)
    names = ["har.activity-changes", "har.devices", "har.daily-totals"]
    create(bootstrap, names)
    produce(bootstrap, [(names[0], encode_change(change)), (names[0], encode_change(change)),
                        (names[1], encode_device(status)), (names[2], encode_day(day))])
    script = tmp_path / "example.py"
    script.write_text(guide_example())
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, env=os.environ | {"HAR_BOOTSTRAP_SERVERS": bootstrap})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert f"{device} EXIT SITTING at {T0 + 1280}" in lines
    assert f"{device} ENTER WALKING at {T0 + 1280}" in lines
    assert f"{device} is WALKING since {T0 + 1280}" in lines
    assert f"{device} on 2026-12-05: {{'SITTING': 1.0}}" in lines
    assert lines.count(f"{device} ENTER WALKING at {T0 + 1280}") == 1  # the copy was dropped


def test_the_client_reads_every_kind_the_service_publishes(service_settings: object) -> None:
    """The service's own output, read with `subscribe`: results, counts, activity changes,
    device records and a closed day, each typed, none twice."""
    import dataclasses

    from service_support import (
        FakeModel,
        InProcessService,
        TopicReader,
        batches_of,
        send_batches,
        synthetic_samples,
    )
    from subscriber_support import offline_subscriber_view

    t0 = T0 - 20_000  # the stream crosses midnight: one day closes
    samples = synthetic_samples(2400, seed=90)
    expected = offline_subscriber_view(FakeModel(), {"w-9": samples}, t0)
    settings = dataclasses.replace(service_settings, max_poll_records=10)  # type: ignore[type-var]
    t = settings.topics
    kinds = {t.activity_topic: "results", t.counts_topic: "counts", t.changes_topic: "changes",
             t.devices_topic: "devices", t.daily_topic: "daily"}
    send_batches(settings.kafka, t.sensor_topic, batches_of("w-9", samples, 50, t0))
    daily = TopicReader(settings.kafka, t.daily_topic)
    with InProcessService(settings, FakeModel()) as service:
        daily.until(lambda r: len(r) == 1, 60, "the closed day", service.check)
        with subscribe(settings.kafka.bootstrap_servers, topics=kinds,
                       idle_timeout_s=4.0) as records:
            got = list(records)
    daily.close()
    by_type: dict[type, list] = {}
    for record in got:
        by_type.setdefault(type(record), []).append(record)
    assert set(by_type) == {ActivityResult, ActivityCounts, ActivityChange, DeviceStatus,
                            DayTotals}
    assert {c.window_id for c in by_type[ActivityChange]} == set(expected.changes)
    assert [(d.device_id, d.day) for d in by_type[DayTotals]] == list(expected.days)
    assert len(by_type[ActivityResult]) == len({r.window_id for r in by_type[ActivityResult]})
    assert records.duplicates == 0 and records.rejected == 0
