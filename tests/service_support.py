"""Helpers shared by the service tests: a fast fake model, recordings, topic I/O, processes.

The fake model is deterministic and depends on both the window and the carried state, so
a wrongly restored state changes its output; it is importable as
`service_support:fake_model` (with tests/ on PYTHONPATH) for service subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from har_stream.core.records import ACTIVITIES, SAMPLE_PERIOD_MS, SensorBatch
from har_stream.kafka.settings import TopicSettings

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


class FakeModel:
    """probs = softmax(window means + recurrent state mixed in); state = leaky average."""

    classes = ACTIVITIES
    state_size = 4
    version = "fake-1"

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        self._w = rng.normal(0, 4.0, (9, len(self.classes))).astype(np.float32)
        self._u = rng.normal(0, 2.0, (self.state_size, len(self.classes))).astype(np.float32)
        self._s = rng.normal(0, 1.0, (9, self.state_size)).astype(np.float32)

    def predict(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = windows.astype(np.float32).mean(axis=1)
        spread = windows.astype(np.float32).std(axis=1)
        new_state = (0.7 * state + 0.3 * np.tanh(mean @ self._s + spread @ self._s)).astype(
            np.float32)
        logits = mean @ self._w + spread @ self._w + new_state @ self._u
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs.astype(np.float32), new_state


def fake_model() -> FakeModel:
    return FakeModel()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def topic_settings(partitions: int = 2) -> TopicSettings:
    """Topic names no other test uses."""
    tag = unique("t")
    return TopicSettings(sensor_topic=f"sensor.{tag}", dlq_topic=f"dlq.{tag}",
                         activity_topic=f"activity.{tag}", counts_topic=f"counts.{tag}",
                         changelog_topic=f"changelog.{tag}", changes_topic=f"changes.{tag}",
                         devices_topic=f"devices.{tag}", daily_topic=f"daily.{tag}",
                         partitions=partitions)


def synthetic_samples(n: int, seed: int) -> np.ndarray:
    """A plausible (n, 6) stream: slowly drifting gravity, periodic motion, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 50.0
    freq = 0.5 + seed % 5 * 0.4
    acc = np.stack([0.3 * np.sin(2 * np.pi * freq * t), 0.2 * np.cos(2 * np.pi * freq * t),
                    1.0 + 0.1 * np.sin(2 * np.pi * 0.05 * t)], axis=1)
    acc += rng.normal(0, 0.05, acc.shape) + np.cumsum(rng.normal(0, 0.002, acc.shape), axis=0)
    gyro = rng.normal(0, 0.3, (n, 3)) + np.sin(2 * np.pi * freq * t)[:, None]
    return np.clip(np.concatenate([acc, gyro], axis=1), -4, 4).astype(np.float32)


def batches_of(device_id: str, samples: np.ndarray, per_message: int,
               t0_ms: int = 1_700_000_000_000) -> list[SensorBatch]:
    return [SensorBatch(device_id, s, t0_ms + round(s * SAMPLE_PERIOD_MS),
                        samples[s:s + per_message])
            for s in range(0, len(samples), per_message)]


@dataclass
class Service:
    """A `har-stream run` subprocess."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        self.process.terminate()
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_service(args: Iterable[str], log_path: Path, env: dict[str, str] | None = None,
                  launcher: Iterable[str] = ("-m", "har_stream.cli")) -> Service:
    """Start `python -m har_stream.cli run ARGS` with tests/ importable (for the fake model);
    `launcher` replaces `-m har_stream.cli` (serving_profile.LAUNCHER: without TensorFlow)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HAR_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO)])
    environment.update(env or {})
    log_file = open(log_path, "wb")  # noqa: SIM115 (the child owns it)
    process = subprocess.Popen([sys.executable, *launcher, "run", *args],
                               stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO,
                               env=environment)
    log_file.close()
    return Service(process, log_path)


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# --- offline reference -------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What an uninterrupted, offline run produces: results by window id and final counts."""

    results: dict[str, tuple[str, np.ndarray, int, int]]  # window id -> activity, probs, t0, t1
    counts: dict[str, dict[str, int]]  # device -> windows per activity


def offline_results(model: object, streams: dict[str, np.ndarray],
                    t0_ms: int = 1_700_000_000_000, seq0: int = 0, epoch: int = 0) -> Expected:
    """Windows of each whole stream through `pipeline.replay`, classified window after window
    with the recurrent state carried per device: the offline path, without the Recognizer.
    `seq0` / `epoch`: the streams start at that seq, in that epoch (as after a restart)."""
    from har_stream.core.pipeline import replay
    from har_stream.core.records import window_id

    classes = list(model.classes)  # type: ignore[attr-defined]
    results: dict[str, tuple[str, np.ndarray, int, int]] = {}
    counts: dict[str, dict[str, int]] = {}
    for device_id, samples in streams.items():
        windows = replay(samples[:, :3], samples[:, 3:], device_id, t0_ms=t0_ms)
        state = np.zeros((1, model.state_size), np.float32)  # type: ignore[attr-defined]
        tally = dict.fromkeys(classes, 0)
        for i in range(len(windows)):
            if windows.fresh[i]:
                state[:] = 0
            probs, state = model.predict(windows.data[i:i + 1], state)  # type: ignore[attr-defined]
            activity = classes[int(np.argmax(probs[0]))]
            tally[activity] += 1
            results[window_id(device_id, seq0 + int(windows.seqs[i]), epoch)] = (
                activity, probs[0], int(windows.t_start_ms[i]), int(windows.t_end_ms[i]))
        counts[device_id] = tally
    return Expected(results, counts)


# --- Kafka I/O ---------------------------------------------------------------------------------


def send(kafka: object, topic: str, items: Iterable[tuple[bytes | None, bytes]],
         headers: list[tuple[str, bytes]] | None = None) -> list[tuple[int, int]]:
    """Produce (key, value) pairs in order; their (partition, offset)."""
    from har_stream.kafka.clients import make_producer

    producer = make_producer(kafka)  # type: ignore[arg-type]
    try:
        futures = [producer.send(topic, key=k, value=v, headers=headers) for k, v in items]
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(30) for f in futures)]
    finally:
        producer.close(5)


def send_batches(kafka: object, topic: str, batches: Iterable[SensorBatch]) -> None:
    from har_stream.core.codec import encode_sensor

    send(kafka, topic, ((b.device_id.encode(), encode_sensor(b)) for b in batches))


def interleave(per_device: dict[str, list[SensorBatch]]) -> list[SensorBatch]:
    """Messages of all devices in round-robin order, each device's in stream order."""
    out: list[SensorBatch] = []
    lists = list(per_device.values())
    for i in range(max(len(x) for x in lists)):
        out.extend(x[i] for x in lists if i < len(x))
    return out


class TopicReader:
    """Reads a whole topic from the beginning, incrementally (no consumer group)."""

    def __init__(self, kafka: object, topic: str) -> None:
        from har_stream.kafka.clients import close_quietly, make_admin, make_consumer
        from har_stream.kafka.ports import Partition

        admin = make_admin(kafka)  # type: ignore[arg-type]
        try:
            count = admin.partition_counts([topic]).get(topic)
        finally:
            close_quietly(admin)
        assert count, f"topic {topic} does not exist"
        self.consumer = make_consumer(kafka, None, fetch_max_wait_ms=100)  # type: ignore[arg-type]
        self.partitions = [Partition(topic, p) for p in range(count)]
        self.consumer.assign(self.partitions)
        self.consumer.seek_to_beginning(*self.partitions)
        self.records: list = []

    def poll(self) -> list:
        for records in self.consumer.poll(timeout_ms=200).values():
            self.records.extend(records)
        return self.records

    def until(self, condition: Callable[[list], bool], timeout: float, what: str,
              check: Callable[[], None] = lambda: None,
              explain: Callable[[list], str] = lambda records: "") -> list:
        deadline = time.monotonic() + timeout
        while not condition(self.poll()):
            check()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what} "
                                     f"({len(self.records)} records so far) "
                                     f"{explain(self.records)}")
        return self.records

    def close(self) -> None:
        self.consumer.close()


def completion(records: list, expected: Expected) -> str:
    """What is missing or unexpected, for failure messages."""
    seen = window_ids(records)
    missing, extra = sorted(set(expected.results) - seen), sorted(seen - set(expected.results))
    return f"missing {len(missing)} {missing[:8]}; unexpected {len(extra)} {extra[:8]}"


def window_ids(records: list) -> set[str]:
    from har_stream.core.codec import decode_result

    return {decode_result(r.value).window_id for r in records}


def check_results(records: list, expected: Expected, tolerance: float = 1e-4) -> int:
    """Every published result equals the offline one (duplicates too); the number of
    duplicates. Fails listing the first mismatches."""
    from har_stream.core.codec import decode_result

    seen: set[str] = set()
    problems = []
    for record in records:
        result = decode_result(record.value)
        assert record.key == result.device_id.encode()
        want = expected.results.get(result.window_id)
        if want is None:
            problems.append(f"{result.window_id}: not a window of the offline run")
            continue
        activity, probs, t_start, t_end = want
        got = np.array([result.probabilities[c] for c in sorted(result.probabilities,
                        key=list(result.probabilities).index)], np.float32)
        if (result.activity != activity or (result.t_start_ms, result.t_end_ms) != (t_start, t_end)
                or not np.allclose(got, probs, atol=tolerance, rtol=0)):
            problems.append(f"{result.window_id}: {result.activity} {got.round(5)} != "
                            f"{activity} {probs.round(5)}")
        seen.add(result.window_id)
    assert not problems, f"{len(problems)} results differ, e.g. {problems[:5]}"
    assert seen == set(expected.results), (
        f"missing {sorted(set(expected.results) - seen)[:10]}")
    return len(records) - len(seen)


def final_counts(records: list) -> dict[str, dict[str, int]]:
    """Each device's counts with the largest total (the consumer-side de-duplication that
    docs/SERVICE.md recommends: totals never decrease)."""
    from har_stream.core.codec import decode_counts

    best: dict[str, dict[str, int]] = {}
    for record in records:
        counts = decode_counts(record.value)
        previous = best.get(counts.device_id)
        if previous is None or sum(counts.windows.values()) >= sum(previous.values()):
            best[counts.device_id] = dict(counts.windows)
    return best


# --- running the service -----------------------------------------------------------------------


def service_args(settings: object) -> list[str]:
    """Command-line flags that make `har-stream run` use `settings` (values that differ
    from the defaults)."""
    import dataclasses

    from har_stream.service import settings as config

    args: list[str] = []

    def walk(obj: object) -> None:
        for f in dataclasses.fields(obj):  # type: ignore[arg-type]
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value)
            elif "kind" in f.metadata and value != f.default:
                if isinstance(value, bool):
                    args.append(config.flag_name(f.name) if value
                                else "--no-" + config.flag_name(f.name)[2:])
                else:
                    args.extend([config.flag_name(f.name), str(value)])

    walk(settings)
    return args


class InProcessService:
    """`app.run` in a thread, stopped (as by SIGTERM) when the block ends."""

    def __init__(self, settings: object, model: object) -> None:
        import threading

        self.settings, self.model = settings, model
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="service")

    def _run(self) -> None:
        from har_stream.service import runner as app

        try:
            app.run(self.settings, self.stop, self.model)  # type: ignore[arg-type]
        except BaseException as exc:  # surfaced in check() and on exit
            self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the service failed: {self.error!r}") from self.error
        assert self.thread.is_alive(), "the service stopped"

    def __enter__(self) -> InProcessService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the service did not stop within 30 s"
        if self.error is not None:
            raise self.error


def create_topics(settings: object) -> None:
    """Create the service's topics now, as `har-stream run` would (so producing before the
    service starts cannot auto-create the sensor topic with another partition count)."""
    from har_stream.kafka.clients import close_quietly, make_admin, prepare_service_topics

    admin = make_admin(settings.kafka)  # type: ignore[attr-defined]
    try:
        prepare_service_topics(admin, settings.topics)  # type: ignore[attr-defined]
    finally:
        close_quietly(admin)
