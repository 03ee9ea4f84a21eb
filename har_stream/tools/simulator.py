"""`har-stream simulate`: replay HAPT recordings into Kafka as if they were live devices.

Each selected recording becomes a device that sends its samples in messages of
`samples_per_message`, with `seq` = sample index and `t0_ms` on a shared clock. Devices
start `stagger_s` apart; `speed` 1 paces them at the real 50 Hz, 10 ten times faster, 0 as
fast as the producer goes. With `--truth` every message carries the ground truth in the
header `har.truth`, so accuracy can be measured downstream (see `parse_truth`).
"""

from __future__ import annotations

import argparse
import heapq
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from har_stream.core.option_rules import check_fields
from har_stream.core.options import add_options, masked_repr, option, options_from
from har_stream.core.records import SAMPLE_PERIOD_MS, SensorBatch
from har_stream.kafka.ports import Producer
from har_stream.kafka.settings import KafkaSettings, TopicSettings
from har_stream.training.hapt import DATA_FILE, default_data_path

log = logging.getLogger(__name__)

TRUTH_HEADER = "har.truth"
UNLABELLED = "-"
PACING_QUANTUM_S = 0.005
"""Shortest pause between paced sends: messages falling due meanwhile go out together, at
most this late. Waking once per message (thousands a second with many devices) cost the
simulator more CPU than encoding and sending them (docs/PERFORMANCE.md §5)."""


@dataclass(frozen=True, slots=True, repr=False)
class SimulatorSettings:
    """Simulator: which recordings, as which devices, how fast."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    sensor_topic: str = option("har.sensor", "topic to publish sensor batches to", form="topic")
    data: str = option("", "HAPT recordings (hapt_raw.npz or the UCI zip); empty: look in "
                           "./data, <repo>/data and ../shared/data")
    users: str = option("test", "users to replay: 'test', 'train', 'all' or ids like 2,4")
    experiments: str = option("", "experiment ids to replay (overrides --users), e.g. 3,4")
    devices: int = option(0, "number of devices (0: one per recording; more than the "
                             "recordings reuses them under new ids)", at_least=0)
    device_prefix: str = option("", "device id prefix (empty: hapt-expXX-userYY ids)")
    speed: float = option(1.0, "1 = real time (50 Hz), 10 = ten times faster, 0 = as fast as "
                               "possible", at_least=0)
    samples_per_message: int = option(50, "samples per Kafka message", at_least=1)
    stagger_s: float = option(0.0, "start offset between consecutive devices (stream seconds)",
                              at_least=0)
    start_ms: int = option(0, "time of every stream's first sample, epoch ms (0: now)",
                           at_least=0)
    max_samples: int = option(0, "replay at most this many samples per device (0: all)",
                              at_least=0)
    duration_s: float = option(0.0, "stop after this many wall-clock seconds (0: until done)",
                               at_least=0)
    passes: int = option(1, "times each device replays its recording (0: until stopped); "
                            "sequence numbers and clocks go on from pass to pass", at_least=0)
    truth: bool = option(False, f"attach the ground-truth activity as header {TRUTH_HEADER}")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        check_fields(self)

    __repr__ = masked_repr


@dataclass(frozen=True, slots=True, eq=False)
class DeviceStream:
    """One simulated device: the recording it replays and where it sits in time."""

    device_id: str
    samples: np.ndarray  # float32 (n, 6): acc xyz, gyro xyz
    truth: np.ndarray  # int64 (n,): activity id per sample, 0 = unlabelled
    exp_id: int
    user_id: int
    t0_ms: int  # time of sample 0
    offset_s: float  # when the device starts, in stream seconds after the first device


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    devices: int
    messages: int
    samples: int
    bytes: int
    seconds: float
    complete: bool

    def __str__(self) -> str:
        rate = self.samples / self.seconds if self.seconds > 0 else float("inf")
        state = "complete" if self.complete else "stopped early"
        return (f"sent {self.messages:,} messages, {self.samples:,} samples "
                f"({self.bytes / 1e6:.1f} MB) for {self.devices} devices in "
                f"{self.seconds:.1f} s ({rate:,.0f} samples/s), {state}")


def select_recordings(data: Any, users: str, experiments: str) -> list[Any]:
    """Recordings chosen by experiment ids, or by users ('test', 'train', 'all', ids)."""
    if experiments.strip():
        wanted = {int(x) for x in experiments.split(",") if x.strip()}
        chosen = [r for r in data.recordings if r.exp_id in wanted]
    elif users.strip() == "all":
        chosen = list(data.recordings)
    elif users.strip() in ("test", "train"):
        test = set(data.test_users)
        chosen = [r for r in data.recordings if (r.user_id in test) == (users.strip() == "test")]
    else:
        wanted = {int(x) for x in users.split(",") if x.strip()}
        chosen = [r for r in data.recordings if r.user_id in wanted]
    if not chosen:
        raise ValueError(f"no recordings match users={users!r} experiments={experiments!r}")
    return chosen


def plan_streams(recordings: Sequence[Any], devices: int = 0, device_prefix: str = "",
                 start_ms: int = 0, stagger_s: float = 0.0, max_samples: int = 0
                 ) -> list[DeviceStream]:
    """One DeviceStream per device; recordings are reused round-robin when devices exceed them."""
    from har_stream.training.labels import sample_segments

    count = devices or len(recordings)
    start_ms = start_ms or int(time.time() * 1000)
    streams = []
    for i in range(count):
        recording = recordings[i % len(recordings)]
        n = len(recording) if max_samples <= 0 else min(max_samples, len(recording))
        if device_prefix:
            device_id = f"{device_prefix}{i:04d}"
        else:
            device_id = f"hapt-exp{recording.exp_id:02d}-user{recording.user_id:02d}"
            if i >= len(recordings):
                device_id += f"-{i // len(recordings)}"
        samples = np.concatenate([recording.acc[:n], recording.gyro[:n]], axis=1)
        truth = sample_segments(recording.segments, len(recording))[1][:n]
        offset = i * stagger_s
        streams.append(DeviceStream(device_id, samples.astype(np.float32), truth,
                                    recording.exp_id, recording.user_id,
                                    start_ms + round(offset * 1000), offset))
    return streams


def schedule(streams: Sequence[DeviceStream], per_message: int, passes: int = 1
             ) -> Iterator[tuple[float, int, int]]:
    """(send time in stream seconds, stream index, first sample's seq) for every message.

    A message is due when its last sample has been measured, as on a real device. With
    `passes` > 1 (0: for ever) a device replays its recording again once it ends, its seq and
    clock going on: seq s carries sample s % len(recording), and no message spans two passes.
    """
    heap = []
    for index, stream in enumerate(streams):
        if len(stream.samples):
            heap.append((_due(stream, 0, per_message), index, 0))
    heapq.heapify(heap)
    while heap:
        due, index, start = heapq.heappop(heap)
        yield due, index, start
        part = message_slice(streams[index], start, per_message)
        nxt = start + part.stop - part.start
        if passes <= 0 or nxt < passes * len(streams[index].samples):
            heapq.heappush(heap, (_due(streams[index], nxt, per_message), index, nxt))


def message_slice(stream: DeviceStream, seq: int, per_message: int) -> slice:
    """Where the message starting at `seq` lies in the device's recording."""
    first = seq % len(stream.samples)
    return slice(first, min(first + per_message, len(stream.samples)))


def _due(stream: DeviceStream, seq: int, per_message: int) -> float:
    part = message_slice(stream, seq, per_message)
    return stream.offset_s + (seq + part.stop - part.start) * SAMPLE_PERIOD_MS / 1000


def truth_header(truth: np.ndarray, names: dict[int, str]) -> bytes:
    """Run-length ground truth of one message: 'offset:NAME,...' ('-' = unlabelled)."""
    changes = np.flatnonzero(np.diff(truth)) + 1
    starts = np.concatenate([[0], changes]).tolist()
    return ",".join(f"{s}:{names.get(int(truth[s]), UNLABELLED)}" for s in starts).encode()


def parse_truth(header: bytes, n_samples: int) -> list[str]:
    """Per-sample activity names from a `har.truth` header (inverse of `truth_header`)."""
    runs = [part.split(":", 1) for part in header.decode().split(",")]
    out: list[str] = []
    for i, (start, name) in enumerate(runs):
        stop = int(runs[i + 1][0]) if i + 1 < len(runs) else n_samples
        out.extend([name] * (stop - int(start)))
    return out


def replay(producer: Producer, topic: str, streams: Sequence[DeviceStream], per_message: int,
           speed: float, names: dict[int, str] | None = None,
           stop: threading.Event | None = None, duration_s: float = 0.0,
           on_sent: Callable[[int, SensorBatch], None] | None = None,
           progress: bool = False, passes: int = 1) -> ReplaySummary:
    """Send every stream's messages in due order, paced by `speed` (0: unpaced); each
    recording `passes` times (0: until stopped), see `schedule`."""
    from har_stream.core.codec import encode_sensor

    stop = stop or threading.Event()
    total = (sum(-(-len(s.samples) // per_message) for s in streams) * passes) or None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="msg", desc="simulating", file=sys.stderr)
    started = time.monotonic()
    messages = samples = size = 0
    complete = True
    try:
        for due, index, start in schedule(streams, per_message, passes):
            if speed > 0:
                wait = started + due / speed - time.monotonic()
                if wait > 0 and stop.wait(max(wait, PACING_QUANTUM_S)):
                    complete = False
                    break
            if stop.is_set() or (duration_s and time.monotonic() - started > duration_s):
                complete = False
                break
            stream = streams[index]
            part = message_slice(stream, start, per_message)
            chunk = stream.samples[part]
            batch = SensorBatch(stream.device_id, start,
                                stream.t0_ms + round(start * SAMPLE_PERIOD_MS), chunk)
            value = encode_sensor(batch)
            headers = None
            if names is not None:
                headers = [(TRUTH_HEADER, truth_header(stream.truth[part], names))]
            producer.send(topic, key=stream.device_id.encode(), value=value, headers=headers)
            if on_sent is not None:
                on_sent(index, batch)
            messages += 1
            samples += len(chunk)
            size += len(value)
            if bar is not None:
                bar.update(1)
        producer.flush()
    finally:
        if bar is not None:
            bar.close()
    return ReplaySummary(len(streams), messages, samples, size, time.monotonic() - started,
                         complete)


# ---------------------------------------------------------------------------------------------
# command line


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate", help="replay HAPT recordings into Kafka as live devices",
        description="Replay recordings of the HAPT data set as devices publishing 50 Hz "
        "sensor batches. Flags override HAR_* environment variables, which override defaults.")
    add_options(parser, SimulatorSettings)
    parser.set_defaults(func=main)


def _ensure_sensor_topic(settings: SimulatorSettings) -> None:
    """Create the sensor topic when it is missing, with the service's default layout: no
    client of har-stream creates a topic by sending to it (docs/RELIABILITY.md), so a
    simulator started before the recognizer would otherwise publish into nothing."""
    from har_stream.kafka.clients import close_quietly, ensure_topics, make_admin
    from har_stream.kafka.ports import TopicLayout

    layout = TopicSettings()
    admin = make_admin(settings.kafka)
    try:
        ensure_topics(admin, {settings.sensor_topic: TopicLayout(layout.partitions,
                                                                 layout.replication_factor)})
    finally:
        close_quietly(admin)


def main(args: argparse.Namespace) -> int:
    try:
        settings = options_from(SimulatorSettings, args, os.environ)
        settings.kafka.check_files()
    except ValueError as exc:
        print(f"har-stream simulate: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    from har_stream.kafka.clients import BrokerUnavailable, TopicError, make_producer
    from har_stream.training.hapt import DataError, load_hapt

    path = settings.data or default_data_path()
    try:
        data = load_hapt(path)
        recordings = select_recordings(data, settings.users, settings.experiments)
    except (DataError, ValueError) as exc:
        print(f"har-stream simulate: {exc}\nThe HAPT data is expected at data/{DATA_FILE} "
              f"(or pass --data / HAR_DATA); see the README for how to get it.",
              file=sys.stderr)
        return 2
    streams = plan_streams(recordings, settings.devices, settings.device_prefix,
                           settings.start_ms, settings.stagger_s, settings.max_samples)
    try:
        _ensure_sensor_topic(settings)
        producer = make_producer(settings.kafka, linger_ms=20)
    except (BrokerUnavailable, TopicError) as exc:
        print(f"har-stream simulate: {exc}", file=sys.stderr)
        return 3
    stop = threading.Event()
    import signal

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    log.info("replaying %d recordings as %d devices to %s at speed %s", len(recordings),
             len(streams), settings.sensor_topic, settings.speed or "max")
    try:
        summary = replay(producer, settings.sensor_topic, streams,
                         settings.samples_per_message, settings.speed,
                         data.activity_names if settings.truth else None, stop,
                         settings.duration_s, progress=settings.progress,
                         passes=settings.passes)
    finally:
        producer.close(timeout_s=10)
    print(summary)
    return 0
