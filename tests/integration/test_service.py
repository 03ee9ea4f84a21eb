"""The service against a real broker, in-process: results, counts, dead letters, eviction.

Each test replays streams into fresh topics, runs `app.run` in a thread and compares what
it publishes with the offline path (`pipeline.replay` + the model, window after window).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import orjson
import pytest
from service_support import (
    Expected,
    FakeModel,
    InProcessService,
    TopicReader,
    batches_of,
    check_results,
    final_counts,
    interleave,
    offline_results,
    send,
    send_batches,
    synthetic_samples,
    window_ids,
)

from har_stream.core import codec
from har_stream.core.records import SensorBatch
from har_stream.service import metrics
from har_stream.service.settings import Settings
from har_stream.serving import DEFAULT_MODEL_DIR, TFLITE_FILE

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000


def shipped_or_fake_model() -> object:
    """The shipped model when the repository has one, else the fake (fast, deterministic)."""
    if (DEFAULT_MODEL_DIR / TFLITE_FILE).is_file():
        from har_stream.serving import load_model

        return load_model(DEFAULT_MODEL_DIR)
    return FakeModel()


def evaluate_path(model: object, recordings: list) -> Expected:
    """What `har-stream evaluate` computes: `make_windows` (pipeline.replay per recording)
    and `stream_probs` (state carried per recording, one batched call per round)."""
    from har_stream.core.records import SAMPLE_PERIOD_MS, WINDOW, window_id
    from har_stream.training.evaluate import stream_probs
    from har_stream.training.windows import make_windows

    windows = make_windows(recordings)
    probs = stream_probs(model, windows)  # type: ignore[arg-type]
    classes = list(model.classes)  # type: ignore[attr-defined]
    results: dict = {}
    counts: dict = {}
    for i, (exp, user, seq) in enumerate(zip(windows.exp_id, windows.user_id, windows.seqs,
                                             strict=True)):
        device_id = f"hapt-exp{exp:02d}-user{user:02d}"
        activity = classes[int(probs[i].argmax())]
        t_start = T0_MS + round(int(seq) * SAMPLE_PERIOD_MS)
        results[window_id(device_id, int(seq))] = (
            activity, probs[i], t_start, t_start + round((WINDOW - 1) * SAMPLE_PERIOD_MS))
        tally = counts.setdefault(device_id, dict.fromkeys(classes, 0))
        tally[activity] += 1
    return Expected(results, counts)


def test_results_and_counts_equal_the_offline_evaluation_for_a_test_subject(
        service_settings: Settings) -> None:
    from har_stream.tools.simulator import default_data_path
    from har_stream.training.hapt import DataError, load_hapt
    from har_stream.training.windows import device_id_of

    try:
        data = load_hapt(default_data_path())
    except DataError as exc:
        pytest.skip(f"HAPT data not available: {exc}")
    recordings = list(data.of_users([data.test_users[0]]))
    streams = {device_id_of(r): np.concatenate([r.acc, r.gyro], axis=1) for r in recordings}
    model = shipped_or_fake_model()
    expected = evaluate_path(model, recordings)
    settings = dataclasses.replace(service_settings, max_poll_records=100)
    send_batches(settings.kafka, settings.topics.sensor_topic, interleave(
        {d: batches_of(d, s, 50, T0_MS) for d, s in streams.items()}))

    results = TopicReader(settings.kafka, settings.topics.activity_topic)
    counts = TopicReader(settings.kafka, settings.topics.counts_topic)
    with InProcessService(settings, model) as service:
        results.until(lambda r: window_ids(r) >= set(expected.results), 120,
                      "every window's result", service.check)
        counts.until(lambda r: final_counts(r) == expected.counts, 30, "final counts",
                     service.check)
    duplicates = check_results(results.poll(), expected)
    assert duplicates == 0  # no crash, no rebalance: exactly once
    assert final_counts(counts.poll()) == expected.counts
    assert sum(sum(c.values()) for c in expected.counts.values()) == len(expected.results) > 400
    versions = {codec.decode_result(r.value).model_version for r in results.poll()}
    assert versions == {model.version}  # type: ignore[attr-defined]
    results.close()
    counts.close()


def _bad_messages(good: SensorBatch) -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, expected reason) of messages the codec must reject."""
    body = orjson.loads(codec.encode_sensor(good))
    key = good.device_id.encode()

    def variant(**changes: object) -> bytes:
        return orjson.dumps(body | changes)

    no_samples = {k: v for k, v in body.items() if k != "samples"}
    return [
        (key, b"garbage", "not_json"),
        (key, b"\xff\xfe{}", "bad_encoding"),
        (key, b"[1, 2, 3]", "not_object"),
        (key, orjson.dumps(no_samples), "missing_field"),
        (key, variant(seq=-5), "negative_seq"),
        (key, variant(samples=[[0.1, 0.2, 1.0, 0.0, 0.0, 0.0, 9.0]]), "bad_sample_width"),
        (key, variant(samples=[[100.0, 0.2, 1.0, 0.0, 0.0, 0.0]]), "out_of_range"),
        (key, variant(samples=[]), "empty_batch"),
        (key, variant(rate_hz=100), "bad_rate"),
        (key, variant(extra=1), "unknown_field"),
        (b"someone-else", codec.encode_sensor(good), "key_mismatch"),
        (key, variant(samples="X").replace(b'"X"', b"[[NaN, 0, 1, 0, 0, 0]]"), "non_finite"),
        (key, None, "not_json"),
    ]


def test_bad_messages_go_to_the_dead_letter_topic_and_good_results_are_unaffected(
        service_settings: Settings) -> None:
    streams = {f"dev-{i}": synthetic_samples(1500, seed=i) for i in range(2)}
    expected = offline_results(FakeModel(), streams, T0_MS)
    good = interleave({d: batches_of(d, s, 50, T0_MS) for d, s in streams.items()})
    bad = _bad_messages(good[0])
    items: list[tuple[bytes | None, bytes | None]] = []
    reasons: dict[int, str] = {}  # position in `items` -> expected reason
    for i, batch in enumerate(good):
        items.append((batch.device_id.encode(), codec.encode_sensor(batch)))
        if i % 4 == 1 and bad:
            key, value, reason = bad.pop()
            reasons[len(items)] = reason
            items.append((key, value))
    assert not bad, "every bad message is interleaved with good ones"
    settings = service_settings
    origin = [("origin", b"device-firmware-1.2")]
    placed = send(settings.kafka, settings.topics.sensor_topic, items, headers=origin)

    dead = TopicReader(settings.kafka, settings.topics.dlq_topic)
    results = TopicReader(settings.kafka, settings.topics.activity_topic)
    with InProcessService(settings, FakeModel()) as service:
        dead.until(lambda r: len(r) >= len(reasons), 60, "every dead letter", service.check)
        results.until(lambda r: window_ids(r) >= set(expected.results), 60, "good results",
                      service.check)
        service.check()  # still running after all the bad input
    check_results(results.poll(), expected)
    letters = {(int(dict(r.headers)[codec.HEADER_SOURCE_PARTITION]),
                int(dict(r.headers)[codec.HEADER_SOURCE_OFFSET])): r for r in dead.poll()}
    assert len(letters) == len(reasons)
    for position, reason in reasons.items():
        letter = letters[placed[position]]
        headers = dict(letter.headers)
        assert headers[codec.HEADER_REASON].decode() == reason
        assert headers[codec.HEADER_SOURCE_TOPIC].decode() == settings.topics.sensor_topic
        assert headers[codec.HEADER_DETAIL]
        assert headers["origin"] == b"device-firmware-1.2"  # original headers kept
        assert (letter.key, letter.value) == items[position]  # original bytes, untouched
    dead.close()
    results.close()


def test_an_evicted_device_resumes_from_its_snapshot(service_settings: Settings) -> None:
    samples = synthetic_samples(3000, seed=11)
    expected = offline_results(FakeModel(), {"sleepy": samples}, T0_MS)
    batches = batches_of("sleepy", samples, 50, T0_MS)
    first, rest = batches[:21], batches[21:]  # 1050 samples: the split is not on a hop
    settings = dataclasses.replace(service_settings, idle_ttl_s=0.5, eviction_interval_s=0.1)
    evicted = metrics.REGISTRY.get_sample_value("har_devices_evicted_total") or 0.0
    restored = metrics.REGISTRY.get_sample_value("har_state_restores_total") or 0.0
    results = TopicReader(settings.kafka, settings.topics.activity_topic)
    with InProcessService(settings, FakeModel()) as service:
        send_batches(settings.kafka, settings.topics.sensor_topic, first)
        results.until(lambda r: len(window_ids(r)) >= 15, 60, "the first results",
                      service.check)
        deadline = time.monotonic() + 20
        while metrics.REGISTRY.get_sample_value("har_devices_evicted_total") == evicted:
            assert time.monotonic() < deadline, "the idle device was never evicted"
            time.sleep(0.1)
        send_batches(settings.kafka, settings.topics.sensor_topic, rest)
        results.until(lambda r: window_ids(r) >= set(expected.results), 60, "every result",
                      service.check)
    assert metrics.REGISTRY.get_sample_value("har_state_restores_total") > restored
    check_results(results.poll(), expected)
    results.close()


MIDNIGHT_MS = 1_700_006_400_000  # 2023-11-15 00:00 UTC


@pytest.mark.parametrize("device_records", ["poll", "checkpoint"])
def test_changes_device_records_and_closed_days_equal_the_offline_ones(
        service_settings: Settings, device_records: str) -> None:
    """Streams across midnight: the three subscriber topics carry what one offline
    `Recognizer` derives from the whole streams (docs/SUBSCRIBERS.md), with device records
    per poll or per checkpoint."""
    from subscriber_support import offline_subscriber_view, published_subscriber_view

    t0 = MIDNIGHT_MS - 30_000
    streams = {f"dev-{i}": synthetic_samples(4000, seed=40 + i) for i in range(3)}
    model = FakeModel()
    expected = offline_subscriber_view(model, streams, t0)
    assert expected.changes and len(expected.days) == 3  # each stream closes its first day
    settings = dataclasses.replace(service_settings, max_poll_records=7,
                                   device_records=device_records)
    send_batches(settings.kafka, settings.topics.sensor_topic, interleave(
        {d: batches_of(d, s, 50, t0) for d, s in streams.items()}))
    topics = settings.topics
    readers = [TopicReader(settings.kafka, name)
               for name in (topics.changes_topic, topics.devices_topic, topics.daily_topic)]
    with InProcessService(settings, model) as service:
        def complete(_: list) -> bool:
            view = published_subscriber_view(*(reader.poll() for reader in readers))
            return view == expected

        readers[1].until(complete, 90, "every change, device record and closed day",
                         service.check)
    changes, devices, days = (reader.poll() for reader in readers)
    assert len(changes) == len(expected.changes) and len(days) == 3  # no crash: once each
    assert {r.key for r in changes + devices + days} == {d.encode() for d in streams}
    for reader in readers:
        reader.close()


def test_window_ids_stay_unique_across_a_stream_restart(service_settings: Settings) -> None:
    """A device restarts its counter mid-stream (seq back to 0, as after a reboot): its
    second stream's windows repeat seqs but not ids (epoch 1), and no result is lost."""
    first, second = synthetic_samples(3600, seed=60), synthetic_samples(1600, seed=61)
    restart_ms = T0_MS + 3600 * 20 + 60_000
    expected_first = offline_results(FakeModel(), {"dev": first}, T0_MS)
    expected_second = offline_results(FakeModel(), {"dev": second}, restart_ms)
    second_stream = {i.replace("dev:0:", "dev:1:"): v for i, v in expected_second.results.items()}
    expected = Expected({**expected_first.results, **second_stream}, {})
    assert len(expected.results) == len(expected_first.results) + len(expected_second.results)
    settings = dataclasses.replace(service_settings, max_poll_records=5)
    send_batches(settings.kafka, settings.topics.sensor_topic,
                 batches_of("dev", first, 50, T0_MS) + batches_of("dev", second, 50, restart_ms))
    results = TopicReader(settings.kafka, settings.topics.activity_topic)
    with InProcessService(settings, FakeModel()) as service:
        results.until(lambda r: window_ids(r) >= set(expected.results), 90,
                      "both streams' results", service.check)
    assert check_results(results.poll(), expected) == 0
    results.close()
