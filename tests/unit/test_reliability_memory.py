"""Memory stays bounded when devices come and go: 100,000 devices that appear once and fall silent.

The real `Service` runs on the in-memory Kafka driver with the eviction path of the
service (checkpoint: snapshot, commit, evict idle devices, shrink the registry). Devices
arrive in waves; the clock moves on between waves, so earlier waves pass the idle TTL and are
evicted while new ones arrive. Checked: the registry never holds more than `max_devices`,
returns to its initial size once every device is idle, and devices that were evicted resume
exactly from their changelog snapshot.
"""

from __future__ import annotations

import dataclasses
import resource
import sys

import numpy as np
from reliability_support import Clock, Harness, Message
from service_support import FakeModel, batches_of, synthetic_samples

from har_stream.core import codec
from har_stream.core.recognizer import Recognizer
from har_stream.core.records import SensorBatch
from har_stream.core.state import DeviceRegistry, Field
from har_stream.service.settings import Settings, TopicSettings

TOPICS = TopicSettings(sensor_topic="in", dlq_topic="dlq", activity_topic="out",
                       counts_topic="counts", changelog_topic="log")
DEVICES, WAVES = 100_000, 10
T0 = 1_700_000_000_000


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def test_registry_shrinks_when_most_slots_are_free_and_keeps_every_state() -> None:
    fields = {"ring": Field((4, 3), "<f4"), "n": Field((), "<i8")}
    reg = DeviceRegistry(fields, capacity=8)
    for i in range(1000):
        slot = reg.slot(f"d{i}")
        reg.arrays["n"][slot] = i
    reg.touch(reg.slots([f"d{i}" for i in range(1000)]), 5.0)
    grown = reg.capacity
    before = {d: reg.snapshot(d) for d in ("d3", "d500", "d999")}
    assert not reg.shrink(), "full: nothing to give back"
    for i in range(1000):
        if i not in (3, 500, 999):
            reg.remove(f"d{i}")
    assert reg.shrink() and reg.capacity == 8 < grown
    assert {d: reg.snapshot(d) for d in before} == before
    assert sorted(reg.idle(now_s=100.0, ttl_s=10.0)) == ["d3", "d500", "d999"]
    assert {reg.get(d) for d in before} == {0, 1, 2}
    new = reg.slot("new")
    assert new == 3 and reg.arrays["n"][new] == 0
    assert reg.nbytes() == 8 * (4 * 3 * 4 + 8 + 8)


def _message(device_id: str, samples: np.ndarray, seq: int, partition: int) -> Message:
    batch = SensorBatch(device_id, seq, T0 + seq * 20, samples)
    return Message(device_id.encode(), codec.encode_sensor(batch), partition)


def test_100k_devices_appearing_once_then_silent_leave_memory_bounded() -> None:
    max_devices = 25_000
    # eviction runs between polls, so it keeps up when one poll's new devices fit in the room
    # it left: 25,000 - 20,008 held at the peak; polls of the default 5,000 would not fit
    settings = Settings(topics=TOPICS, commit_interval_s=0, idle_ttl_s=60.0,
                        eviction_interval_s=1.0, max_devices=max_devices, max_poll_records=500,
                        metrics_address="")
    clock = Clock()
    h = Harness(settings, clock=clock, read={"out", "dlq"})
    # the changelog keeps the returning devices' snapshots; the others' are only counted
    h.cluster.retain(TOPICS.changelog_topic, lambda key: (key or b"").startswith(b"back-"))
    service = h.service
    registry = service.registry
    per_device = registry.nbytes_per_device()
    returning = {f"back-{i}": synthetic_samples(2000, seed=i) for i in range(8)}

    def feed(device_id: str, samples: np.ndarray, seq: int) -> None:
        p = sum(device_id.encode()) % 8
        h.feed(_message(device_id, samples[start:start + 500], seq + start, p)
               for start in range(0, len(samples), 500))

    burst = synthetic_samples(64, seed=99)  # one message each: half a window, state allocated
    rss_start, peak_devices, peak_bytes = rss_mib(), 0, 0
    for wave in range(WAVES):
        if wave == 0:
            for device_id, samples in returning.items():
                feed(device_id, samples[:1000], 0)
        template = codec.encode_sensor(SensorBatch("w0-00000", 0, T0, burst))
        h.feed(Message(device_id.encode(), template.replace(b"w0-00000", device_id.encode()),
                       sum(device_id.encode()) % 8)  # the same message under new device ids
               for device_id in (f"w{wave}-{i:05d}" for i in range(DEVICES // WAVES)))
        while h.unread():
            service.step()
            service.checkpoint()
            peak_devices = max(peak_devices, len(registry))
            peak_bytes = max(peak_bytes, registry.nbytes())
        h.cluster.delete_records(TOPICS.sensor_topic, h.committed())  # retention: consumed
        clock.now += 40.0  # a wave is idle past the 60 s TTL two waves later
    rss_peak = rss_mib()
    clock.now += 120.0
    service.checkpoint()  # evicts everything idle, then shrinks
    assert len(registry) == 0 and registry.capacity == 256
    assert peak_devices <= max_devices
    assert not h.sent("dlq"), "eviction kept up: no device was refused"
    bound = max_devices * per_device * 1.5 + 256 * per_device  # slots grow by 1.5x
    assert peak_bytes <= bound
    assert registry.nbytes() == 256 * per_device
    index = service.ownership.evicted
    index_mib = (sys.getsizeof(index) + sum(sys.getsizeof(d) + sys.getsizeof(loc)
                                            for d, loc in index.items())) / 2**20
    print(f"\n{DEVICES} devices in {WAVES} waves: peak {peak_devices} held, registry "
          f"{peak_bytes / 2**20:.0f} MiB (bound {bound / 2**20:.0f} MiB), after the TTL "
          f"{registry.nbytes() / 2**20:.1f} MiB; RSS {rss_start:.0f} -> {rss_peak:.0f} -> "
          f"{rss_mib():.0f} MiB; index of evicted devices: {len(service.ownership.evicted)} "
          f"entries, {index_mib:.1f} MiB")

    for device_id, samples in returning.items():  # evicted long ago: resume from the snapshot
        feed(device_id, samples[1000:], 1000)
    while h.unread():
        service.step()
        service.checkpoint()
    got: dict[str, np.ndarray] = {}
    for record in h.sent("out"):
        result = codec.decode_result(record.value)
        if result.device_id in returning:
            got[result.window_id] = np.array(list(result.probabilities.values()))
    want = {}
    for device_id, samples in returning.items():
        out = Recognizer(FakeModel()).process(batches_of(device_id, samples, len(samples)))
        want |= {r.window_id: np.array(list(r.probabilities.values())) for r in out.results}
    assert set(got) == set(want)
    for window_id, probs in want.items():
        np.testing.assert_allclose(got[window_id], probs, atol=1e-6)


def test_devices_beyond_the_limit_are_dead_lettered_not_held() -> None:
    settings = Settings(topics=TOPICS, commit_interval_s=0, idle_ttl_s=0, max_devices=50,
                        metrics_address="")
    h = Harness(dataclasses.replace(settings), read={"dlq"})
    burst = synthetic_samples(10, seed=3)
    h.feed(_message(f"d{i}", burst, 0, 0) for i in range(80))
    h.feed([_message("d3", burst, 10, 0)])  # a held device goes on
    while h.unread():
        h.service.step()
        h.service.checkpoint()
    assert len(h.service.registry) == 50
    letters = h.sent("dlq")
    assert [r.key for r in letters] == [f"d{i}".encode() for i in range(50, 80)]
    for letter in letters:
        headers = dict(letter.headers or [])
        assert headers[codec.HEADER_REASON] == b"too_many_devices"
        assert b"limit is 50" in headers[codec.HEADER_DETAIL]
    assert h.committed() == {0: 81}
