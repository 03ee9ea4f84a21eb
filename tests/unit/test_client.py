"""The subscriber client without a broker: decoding, identities, bounded de-duplication."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from har_stream.client import (
    DEFAULT_TOPICS,
    ActivityChange,
    ActivityCounts,
    ActivityResult,
    DayTotals,
    Deduplicator,
    DeviceStatus,
    Subscription,
    decode,
    record_identity,
)
from har_stream.client.subscription import topic_kinds
from har_stream.core.codec import encode_counts, encode_result
from har_stream.core.outputs_codec import encode_change, encode_day, encode_device

DAY = DayTotals("d", "2026-12-06", 0, 0, {"WALKING": 1}, 0, 2540, 0, True)
RECORDS = {
    "results": ActivityResult("d", 64, 1280, 3820, "WALKING", 0.9, {"WALKING": 0.9}, "m"),
    "counts": ActivityCounts("d", {"WALKING": 2}, {"WALKING": 2.56}, 0, 3820, 64),
    "changes": ActivityChange("d", None, "WALKING", 0, 3820, 0.9, 64, 2),
    "devices": DeviceStatus("d", "WALKING", 0, 0.9, "WALKING", 0.9, 64, 3820, None),
    "daily": DAY,
}
ENCODERS = {"results": encode_result, "counts": encode_counts, "changes": encode_change,
            "devices": encode_device, "daily": encode_day}


@pytest.mark.parametrize("kind", RECORDS)
def test_every_kind_decodes_to_its_typed_record(kind: str) -> None:
    assert decode(kind, ENCODERS[kind](RECORDS[kind])) == RECORDS[kind]


def test_identities_differ_between_kinds_and_records() -> None:
    identities = {record_identity(r) for r in RECORDS.values()}
    assert len(identities) == len(RECORDS)
    later = ActivityChange("d", "WALKING", "SITTING", 9000, 12000, 0.9, 640, 2)
    assert record_identity(later) != record_identity(RECORDS["changes"])


def test_the_deduplicator_forgets_the_oldest_beyond_its_capacity() -> None:
    dedup = Deduplicator(capacity=3)
    assert [dedup.first(k) for k in "abcab"] == [True, True, True, False, False]
    assert dedup.first("d") and len(dedup) == 3  # "c" was the least recent: forgotten
    assert dedup.first("c") and not dedup.first("d")
    assert dedup.duplicates == 3
    with pytest.raises(ValueError):
        Deduplicator(0)


def test_topics_map_to_kinds() -> None:
    assert topic_kinds(["har.activity", "har.devices"]) == {"har.activity": "results",
                                                           "har.devices": "devices"}
    assert topic_kinds({"x": "changes"}) == {"x": "changes"}
    with pytest.raises(ValueError, match="default topic"):
        topic_kinds(["renamed"])
    with pytest.raises(ValueError, match="kinds"):
        topic_kinds({"x": "nonsense"})
    assert set(DEFAULT_TOPICS.values()) == set(RECORDS)


class FakeConsumer:
    """Hands out prepared polls, then nothing."""

    def __init__(self, polls: list[list[tuple[str, bytes]]]) -> None:
        self.polls = polls
        self.closed = False

    def poll(self, timeout_ms: int) -> dict:
        if not self.polls:
            return {}
        batch = self.polls.pop(0)
        return {0: [SimpleNamespace(topic=t, value=v) for t, v in batch]}

    def assignment(self) -> set[int]:
        return {0}

    def close(self) -> None:
        self.closed = True


def test_a_subscription_yields_typed_records_once_and_skips_bad_ones() -> None:
    change, device = ENCODERS["changes"](RECORDS["changes"]), ENCODERS["devices"](
        RECORDS["devices"])
    consumer = FakeConsumer([[("c", change), ("v", device), ("c", b"{not json")],
                             [("c", change), ("v", device)]])
    with Subscription(consumer, {"c": "changes", "v": "devices"}, Deduplicator(),
                      idle_timeout_s=0.3, poll_timeout_ms=10) as records:
        got = list(records)
    assert got == [RECORDS["changes"], RECORDS["devices"]]
    assert (records.received, records.rejected, records.duplicates) == (5, 1, 2)
    assert consumer.closed


def test_the_client_imports_no_tensorflow_and_no_service() -> None:
    code = ("import sys, har_stream.client; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'ai_edge_litert') or m.startswith(('har_stream.service', "
            "'har_stream.serving', 'har_stream.kafka'))]; print(bad); sys.exit(bool(bad))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_batches_go_on_through_polls_without_records() -> None:
    consumer = FakeConsumer([[("c", ENCODERS["changes"](RECORDS["changes"]))]])
    subscription = Subscription(consumer, {"c": "changes"}, Deduplicator(), idle_timeout_s=0.05,
                                poll_timeout_ms=1)
    batches = list(subscription.batches())
    assert batches[0] == [RECORDS["changes"]]
    assert len(batches) > 1 and all(batch == [] for batch in batches[1:])
