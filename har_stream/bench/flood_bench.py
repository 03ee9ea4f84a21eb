"""Flood: N new devices send one short message each, all at once, into a running service.

A fleet starting together, or an attacker inventing device ids. Each size runs in a fresh
process against its own embedded broker, with the service as `har-stream run` builds it
(`app.run`: its clients, a producer of its own for snapshots, default limits, checkpoints
every 5 s) and a stand-in model with the shipped model's state width
(`memory_bench.StateOnlyModel`, so the figures are the service's, not the model's). One
steady device sends a 64-sample message every 1.28 s throughout, as live traffic would.

Measured, from the service's own objects (sampled every 0.1 s) and calls:
- RSS before the flood, its peak, and once the flood is checkpointed (freed memory handed
  back first); per device = (after - before) / N;
- the checkpoint(s) after the flood: start to commit, and snapshots written;
- how long `har_active_devices` lagged behind the devices actually held;
- replay after a crash at the worst moment: the longest time a consumed message waited for
  its offset to be committed (what a kill -9 just before that commit replays);
- "output not acknowledged" warnings (each paused consumption).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

from har_stream.bench.measure import load, rss_bytes, settle_memory
from har_stream.bench.memory_bench import StateOnlyModel
from har_stream.bench.report import provenance, table, write_section

SIZES = (10_000, 100_000)
QUICK_SIZES = (2_000,)
STEADY_PERIOD_S = 1.28
T0_MS = 1_700_000_000_000


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.not_acknowledged = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "not acknowledged" in record.getMessage():
            self.not_acknowledged += 1


class _Probe:
    """Records, by wrapping `Service`, when checkpoints start and commit and what each
    step had consumed by then."""

    def __init__(self) -> None:
        from har_stream.service.loop import Service

        self.service: Any = None
        self.begins: list[float] = []
        self.commits: list[tuple[float, dict[int, int]]] = []
        self.steps: list[tuple[float, dict[int, int]]] = []
        init, begin, commit, step = (Service.__init__, Service._begin_checkpoint,
                                     Service._commit, Service.step)
        probe = self

        def wrapped_init(service: Any, *args: Any, **kwargs: Any) -> None:
            init(service, *args, **kwargs)
            probe.service = service

        def wrapped_begin(service: Any) -> None:
            had = service.checkpoints.current
            begin(service)
            if had is None and service.checkpoints.current is not None:
                probe.begins.append(time.monotonic())

        def wrapped_commit(service: Any, offsets: dict[int, int]) -> None:
            commit(service, offsets)
            if offsets:
                probe.commits.append((time.monotonic(), dict(offsets)))

        def wrapped_step(service: Any) -> Any:
            out = step(service)
            probe.steps.append((time.monotonic(), dict(service.ownership.processed)))
            return out

        Service.__init__ = wrapped_init  # type: ignore[assignment]
        Service._begin_checkpoint = wrapped_begin  # type: ignore[assignment]
        Service._commit = wrapped_commit  # type: ignore[assignment]
        Service.step = wrapped_step  # type: ignore[assignment]



def worst_replay_s(steps: list[tuple[float, dict[int, int]]],
                   commits: list[tuple[float, dict[int, int]]], since: float) -> float:
    """Longest wait of a consumed message for its commit, over the commits after `since`:
    what a crash just before that commit would replay. `steps`: (time, offset after the last
    message processed per partition); `commits`: (time, offsets committed), both in order."""
    committed: dict[int, int] = {}
    worst = 0.0
    for at, offsets in commits:
        first_new = next((t for t, processed in steps if t < at and any(
            o > committed.get(p, 0) for p, o in processed.items())), None)
        if first_new is not None and at > since:
            worst = max(worst, at - first_new)
        committed.update(offsets)
    return worst


def _steady(producer: Any, topic: str, stop: threading.Event) -> None:
    from har_stream.core import codec
    from har_stream.core.records import SensorBatch

    samples = np.random.default_rng(0).normal(0, 0.3, (64, 6)).astype(np.float32)
    seq = 0
    while not stop.wait(STEADY_PERIOD_S):
        batch = SensorBatch("steady", seq, T0_MS + seq * 20, samples)
        producer.send(topic, key=b"steady", value=codec.encode_sensor(batch))
        producer.flush(5)
        seq += 64


def _bookkeeping_bytes(service: Any) -> int:
    """Bytes of the per-device Python objects beside the slot arrays: ids, slot map, the
    ownership tables, the rate guard's buckets (sys.getsizeof, one level deep)."""
    tables: list[Any] = [service.registry._slots, service.ownership.device_partition,
                         service.ownership.snapshot_at, service.ownership.device_guard,
                         service.intake.rate_guard._buckets]
    total = sum(sys.getsizeof(d) for d in service.registry._slots)
    for held in tables:
        total += sys.getsizeof(held) + sum(sys.getsizeof(v) for v in held.values())
    total += sum(sys.getsizeof(x) for b in service.intake.rate_guard._buckets.values() for x in b)
    return total


def _stage_seconds(metrics: Any, stage: str) -> float:
    """Seconds the loop spent in `stage` so far (har_stage_duration_seconds' sum)."""
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name.endswith("_sum") and sample.labels.get("stage") == stage:
                return float(sample.value)
    return 0.0


def send_flood(bootstrap_servers: str, topic: str, devices: int) -> None:
    """One 10-sample message from each of `devices` new devices, as fast as they go."""
    from har_stream.core import codec
    from har_stream.core.records import SensorBatch
    from har_stream.kafka.clients import make_producer
    from har_stream.service.settings import KafkaSettings

    producer = make_producer(KafkaSettings(bootstrap_servers=bootstrap_servers), linger_ms=20)
    burst = np.random.default_rng(1).normal(0, 0.3, (10, 6)).astype(np.float32)
    template = codec.encode_sensor(SensorBatch("flood-0000000", 0, T0_MS, burst))
    for i in range(devices):
        device_id = f"flood-{i:07d}".encode()
        producer.send(topic, key=device_id, value=template.replace(b"flood-0000000", device_id))
    producer.flush(120)
    producer.close(timeout_s=5)


def measure(devices: int) -> dict[str, Any]:
    """Flood a running service with `devices` new devices in this process; the figures."""
    from har_stream.kafka.clients import make_producer
    from har_stream.service import metrics
    from har_stream.service import runner as app
    from har_stream.service.settings import KafkaSettings, Settings
    from har_stream.tools.broker import EmbeddedBroker

    warnings = _Warnings()
    logging.getLogger("har_stream").addHandler(warnings)
    probe = _Probe()
    with EmbeddedBroker() as broker:
        settings = Settings(kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers),
                            metrics_address="")
        stop, steady_stop = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            try:
                app.run(settings, stop, StateOnlyModel())
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=serve, name="service")
        thread.start()
        while probe.service is None or not probe.service.ownership.owned:
            if errors:
                raise errors[0]
            time.sleep(0.1)
        service = probe.service
        topic = settings.topics.sensor_topic
        steady_producer = make_producer(settings.kafka)
        steady = threading.Thread(target=_steady, args=(steady_producer, topic, steady_stop))
        steady.start()
        time.sleep(3 * settings.commit_interval_s)
        settle_memory()
        rss_before = rss_bytes()
        snapshots_before = metrics.STATE_SNAPSHOTS._value.get()
        snapshot_s_before = _stage_seconds(metrics, "snapshot")

        flood_at = time.monotonic()
        # from another process, as devices would: its buffers are not the service's memory;
        # with the steady device, `devices` are held: the default limit at 100,000
        subprocess.run([sys.executable, "-c", "from har_stream.bench.flood_bench import "
                        f"send_flood; send_flood({broker.bootstrap_servers!r}, {topic!r}, "
                        f"{devices - 1})"], check=True)
        sent_s = time.monotonic() - flood_at

        peak = rss_bytes()
        held_at: float | None = None
        gauge_at: float | None = None
        deadline = flood_at + 900
        while time.monotonic() < deadline and not errors:
            now = time.monotonic()
            peak = max(peak, rss_bytes())
            held = len(service.registry)
            if held_at is None and held >= devices:
                held_at = now
            gauge = metrics.ACTIVE_DEVICES._value.get()
            if held_at is not None and gauge_at is None and gauge >= devices:
                gauge_at = now
            if held_at is not None and gauge_at is not None and now - held_at > 1.0 and any(
                    held_at < b < c for b in probe.begins for c, _ in probe.commits):
                break  # a checkpoint begun once every device was held has committed
            time.sleep(0.1)
        steady_stop.set()
        steady.join()
        bookkeeping = _bookkeeping_bytes(service)
        settle_memory()
        rss_after = rss_bytes()
        snapshots = metrics.STATE_SNAPSHOTS._value.get() - snapshots_before
        snapshot_s = _stage_seconds(metrics, "snapshot") - snapshot_s_before
        stop.set()
        thread.join(120)
        steady_producer.close(timeout_s=5)
    if errors:
        raise errors[0]
    checkpoints = [(b, next((t for t, _ in probe.commits if t > b), None))
                   for b in probe.begins if b > flood_at]
    durations = [c - b for b, c in checkpoints if c is not None]
    return {
        "devices": devices,
        "flood_sent_s": round(sent_s, 1),
        "consumed_s": round((held_at or float("nan")) - flood_at, 1),
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_peak_mib": round(peak / 2**20, 1),
        "rss_after_mib": round(rss_after / 2**20, 1),
        "rss_per_device_kib": round((rss_after - rss_before) / (devices - 1) / 1024, 2),
        "bookkeeping_per_device_b": round(bookkeeping / devices),
        "longest_checkpoint_s": round(max(durations, default=float("nan")), 1),
        "checkpoints": len(durations),
        "snapshots": int(snapshots),
        "snapshot_us_each": round(snapshot_s / max(snapshots, 1) * 1e6, 1),
        "gauge_lag_s": round((gauge_at or float("nan")) - (held_at or float("nan")), 1),
        "worst_replay_s": round(worst_replay_s(probe.steps, probe.commits, flood_at), 1),
        "not_acknowledged_warnings": warnings.not_acknowledged,
    }


def measure_in_child(devices: int) -> dict[str, Any]:
    code = ("import json; from har_stream.bench.flood_bench import measure; "
            f"print(json.dumps(measure({devices})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main(write: bool = False, quick: bool = False) -> None:
    before = load()
    rows = []
    for devices in QUICK_SIZES if quick else SIZES:
        got = measure_in_child(devices)
        print(json.dumps(got), flush=True)
        rows.append([f"{devices:,}", f"{got['consumed_s']:g} s",
                     f"{got['rss_before_mib']:,.0f} → {got['rss_peak_mib']:,.0f} → "
                     f"{got['rss_after_mib']:,.0f} MiB", f"{got['rss_per_device_kib']:.2f} KiB",
                     f"{got['longest_checkpoint_s']:g} s ({got['checkpoints']})",
                     f"{got['snapshots']:,}", f"{got['gauge_lag_s']:g} s",
                     f"{got['worst_replay_s']:g} s", str(got["not_acknowledged_warnings"])])
    text = table(["devices", "consumed in", "RSS before → peak → after", "RSS per device",
                  "longest checkpoint (count)", "snapshots", "device gauge lag",
                  "worst replay", "'not acknowledged'"], rows)
    print(text)
    if write:
        body = (f"{provenance('har-stream bench flood --write')}\n"
                f"Machine shared: {before} at the start, {load()} at the end.\n\n"
                + (__doc__ or "").split("\n\n", 1)[1] + "\n" + text)
        write_section("Flood of new devices", body)
