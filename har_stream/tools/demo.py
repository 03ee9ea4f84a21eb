"""`har-stream demo`: the whole product on one machine, watched live, ending with an accuracy.

Without `--bootstrap-servers` (or HAR_BOOTSTRAP_SERVERS) it starts the embedded broker; with
them, its topics and group get a unique prefix (`demo-<8 hex>.`, or HAR_TOPIC_PREFIX), so a
demo on a shared cluster stays apart from every deployment and every other demo.
Then it creates the topics, starts the recognizer (`har-stream run` in a child process, its
metrics on http://127.0.0.1:9108/metrics), replays the test subjects' recordings as devices
at `--speed` times real time, and shows per device the current activity, its confidence and
the true activity, with totals and throughput. It ends with the window accuracy against the
ground truth (windows inside one basic-activity segment, as in the offline evaluation).
Ctrl-C stops everything it started, in order, and still prints the accuracy so far.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from har_stream.core.option_rules import check_fields
from har_stream.core.options import add_options, flag_name, masked_repr, option, options_from
from har_stream.core.records import ACTIVITIES, HOP, WINDOW
from har_stream.kafka.settings import TOPIC_FIELDS, KafkaSettings, TopicSettings
from har_stream.service.settings import metrics_host_port
from har_stream.tools.broker import die_with_parent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, repr=False)
class DemoSettings:
    """Demo: what to replay, how fast, and where the recognizer serves metrics."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    group_id: str = option("har-stream-demo", "consumer group of the demo's recognizer",
                           form="not empty")
    devices: int = option(0, "devices to simulate (0: one per test recording, 15 here)",
                          at_least=0)
    speed: float = option(10.0, "replay speed, times real time (0: as fast as possible)",
                          at_least=0)
    duration: float = option(120.0, "stop the replay after this many seconds (0: whole "
                                    "recordings)", at_least=0)
    samples_per_message: int = option(50, "samples per sensor message", at_least=1)
    data: str = option("", "HAPT recordings (empty: ./data, <repo>/data, ../shared/data)")
    model: str = option("", "model directory for the recognizer (empty: the shipped one)")
    metrics_address: str = option("127.0.0.1:9108", "recognizer metrics endpoint (a free port "
                                                    "is used if this one is taken)",
                                  form="host:port")

    def __post_init__(self) -> None:
        """Rules of the fields; the topic prefix is applied to the topics and group, once."""
        check_fields(self)
        prefix = self.topics.topic_prefix
        if prefix:
            object.__setattr__(self, "topics", self.topics.prefixed())
            object.__setattr__(self, "group_id", prefix + self.group_id)

    __repr__ = masked_repr


def unique_prefix() -> str:
    """The topic prefix of a demo on a cluster it does not own: its topics and group are its
    own, so it neither reads nor disturbs another deployment's (HAR_TOPIC_PREFIX overrides)."""
    return f"demo-{uuid.uuid4().hex[:8]}."


@dataclass
class DeviceView:
    """What the live view shows for one device."""

    activity: str = "-"
    confidence: float = 0.0
    truth: str = "-"
    windows: int = 0
    last: tuple[int, int] = (-1, -1)  # epoch and seq of the latest window shown


@dataclass
class Scoreboard:
    """Results seen so far, de-duplicated by window id, scored against the ground truth."""

    truth: dict[str, dict[int, str]]  # device -> window seq -> basic activity (labelled only)
    since_ms: int = 0  # results of windows starting earlier belong to an earlier run
    devices: dict[str, DeviceView] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    labelled: int = 0
    correct: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, result: Any) -> None:
        if result.window_id in self.seen or result.t_start_ms < self.since_ms:
            return
        self.seen.add(result.window_id)
        view = self.devices.setdefault(result.device_id, DeviceView())
        view.windows += 1
        truth = self.truth.get(result.device_id, {}).get(result.seq)
        if truth is not None:
            self.labelled += 1
            self.correct += result.activity == truth
        if (result.epoch, result.seq) > view.last:
            view.activity, view.confidence, view.last = (
                result.activity, result.confidence, (result.epoch, result.seq))
            view.truth = truth or "(no single label)"

    @property
    def accuracy(self) -> float:
        return self.correct / self.labelled if self.labelled else float("nan")

    def summary(self) -> str:
        return (f"accuracy {100 * self.accuracy:.1f} % over {self.labelled:,} labelled windows "
                f"({self.correct:,} right; {len(self.seen):,} windows from "
                f"{len(self.devices)} devices)")


def window_truth(stream: Any, names: dict[int, str]) -> dict[int, str]:
    """Basic activity of each window lying inside one labelled segment (evaluation rule)."""
    from har_stream.training.hapt import BASIC_ACTIVITY_IDS

    n = len(stream.samples)
    seqs = np.arange(0, max(n - WINDOW + 1, 0), HOP)
    # one run of identical labels covering the whole window; 0 = unlabelled
    per_sample = stream.truth
    change = np.concatenate([[0], np.cumsum(np.diff(per_sample) != 0)])
    out = {}
    for seq in seqs.tolist():
        activity = int(per_sample[seq])
        if activity in BASIC_ACTIVITY_IDS and change[seq] == change[seq + WINDOW - 1]:
            out[seq] = names[activity]
    return out


# ---------------------------------------------------------------------------------------------
# the parts the demo starts


def port_is_free(address: str) -> bool:
    host, port = metrics_host_port(address)
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def recognizer_command(settings: DemoSettings, metrics_address: str) -> list[str]:
    k, t = settings.kafka, settings.topics
    topics = [part for name in TOPIC_FIELDS for part in (flag_name(name), getattr(t, name))]
    command = [sys.executable, "-m", "har_stream.cli", "run",
               "--bootstrap-servers", k.bootstrap_servers, *topics,
               "--topic-prefix", "",  # the names above are prefixed already
               "--group-id", settings.group_id, "--metrics-address", metrics_address,
               "--session-timeout-ms", "6000", "--heartbeat-interval-ms", "1000",
               "--poll-timeout-ms", "100", "--no-create-topics"]
    return command + (["--model", settings.model] if settings.model else [])


@contextmanager
def recognizer_process(settings: DemoSettings, metrics_address: str, env: dict[str, str],
                       log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`har-stream run` in its own session (so Ctrl-C reaches only the demo, which then stops
    it after the simulator and before the broker), stopped with SIGTERM."""
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(recognizer_command(settings, metrics_address),
                                   stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                   preexec_fn=die_with_parent)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def assigned_partitions(metrics_address: str) -> float:
    try:
        with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("har_assigned_partitions "):
            return float(line.split()[1])
    return 0.0


def tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# the live view


def render(board: Scoreboard, sent: dict[str, int], metrics_url: str, done: bool) -> Any:
    from rich.table import Table

    elapsed = max(time.monotonic() - board.started, 1e-9)
    samples = sum(sent.values())
    title = (f"har-stream demo — {elapsed:5.1f} s — {samples:,} samples sent "
             f"({samples / elapsed:,.0f}/s) — {len(board.seen):,} windows "
             f"({len(board.seen) / elapsed:,.0f}/s) — accuracy "
             f"{100 * board.accuracy:.1f} % of {board.labelled:,}"
             + (" — replay finished" if done else ""))
    table = Table(title=title, caption=f"metrics: {metrics_url}", expand=False)
    for column in ("device", "activity", "confidence", "true activity", "windows"):
        table.add_column(column, justify="right" if column in ("confidence", "windows")
                         else "left")
    for device_id in sorted(board.devices):
        view = board.devices[device_id]
        style = ("green" if view.activity == view.truth
                 else "red" if view.truth in ACTIVITIES else "")
        table.add_row(device_id, view.activity, f"{view.confidence:.2f}", view.truth,
                      str(view.windows), style=style)
    return table


def watch(reader: Any, board: Scoreboard, sent: dict[str, int],
          replay_done: threading.Event, metrics_url: str, alive: Any = lambda: True,
          grace_s: float = 15.0) -> None:
    """Consume results into the scoreboard and redraw until the replay is done and every
    expected window arrived (or `grace_s` after the replay ended, or the recognizer died)."""
    from rich.console import Console
    from rich.live import Live

    from har_stream.core.codec import decode_result

    console = Console(stderr=False)
    finished_at: float | None = None
    last_print = 0.0
    with ExitStack() as stack:
        live = None
        if console.is_terminal:
            live = stack.enter_context(Live(console=console, refresh_per_second=4))
        while True:
            for records in reader.poll(timeout_ms=200).values():
                for record in records:
                    if record.value is not None:
                        board.add(decode_result(record.value))
            if not alive():
                break
            done = replay_done.is_set()
            if live is not None:
                live.update(render(board, sent, metrics_url, done))
            elif time.monotonic() - last_print > 5:
                last_print = time.monotonic()
                print(f"{len(board.seen):,} windows so far; {board.summary()}", flush=True)
            if done:
                finished_at = finished_at or time.monotonic()
                want = sum(max((n - WINDOW) // HOP + 1, 0) for n in sent.values())
                if len(board.seen) >= want or time.monotonic() - finished_at > grace_s:
                    break


# ---------------------------------------------------------------------------------------------
# command line


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="embedded broker + recognizer + simulator, live view, final accuracy",
        description="Run the whole pipeline on this machine and watch it: without "
        "--bootstrap-servers an embedded broker is started. Flags override HAR_* environment "
        "variables, which override defaults.")
    add_options(parser, DemoSettings)
    parser.set_defaults(func=main)


def check_recognizer_settings(settings: DemoSettings) -> None:
    """Raise SettingsError if the recognizer the demo starts would refuse its settings: its
    flags (`recognizer_command`) over the HAR_* variables it inherits, and its model. So a
    bad one stops the demo before a broker is started."""
    from har_stream.service.model_setting import check_model_setting
    from har_stream.service.settings import Settings, settings_from

    parser = argparse.ArgumentParser()
    add_options(parser, Settings)
    flags = recognizer_command(settings, "127.0.0.1:0")[4:]  # after `python -m ... run`
    settings_from(parser.parse_args(flags), os.environ)
    settings.kafka.check_files()
    check_model_setting(settings.model)


def main(args: argparse.Namespace) -> int:
    embedded = args.bootstrap_servers is None and not os.environ.get("HAR_BOOTSTRAP_SERVERS")
    try:
        settings = options_from(DemoSettings, args, os.environ,
                                None if embedded else {"topic_prefix": unique_prefix()})
    except ValueError as exc:
        print(f"har-stream demo: {exc}", file=sys.stderr)
        return 2
    try:
        check_recognizer_settings(settings)
    except ValueError as exc:  # SettingsError: the variable and the rule
        print(f"har-stream demo: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from har_stream.tools.simulator import default_data_path, plan_streams, select_recordings
    from har_stream.training.hapt import DataError, load_hapt

    path = settings.data or default_data_path()
    try:
        data = load_hapt(path)
    except DataError as exc:
        print(f"har-stream demo: the HAPT recordings are needed ({exc}).\nPut hapt_raw.npz in "
              "./data or ../shared/data, or pass --data PATH; `har-stream data --help` shows "
              "how to download and convert the UCI archive.", file=sys.stderr)
        return 2
    streams = plan_streams(select_recordings(data, "test", ""), settings.devices)
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):  # stop as cleanly as on Ctrl-C
        signal.signal(stop_signal, signal.default_int_handler)
    try:
        return _run(settings, embedded, streams, data.activity_names)
    except KeyboardInterrupt:
        return 130


def _run(settings: DemoSettings, embedded: bool, streams: list[Any],
         names: dict[int, str]) -> int:
    import dataclasses

    from har_stream.kafka.clients import (
        BrokerUnavailable,
        close_quietly,
        make_admin,
        make_consumer,
        make_producer,
        prepare_service_topics,
    )
    from har_stream.tools.simulator import replay

    board = Scoreboard({s.device_id: window_truth(s, names) for s in streams},
                       since_ms=min(s.t0_ms for s in streams))
    sent: dict[str, int] = dict.fromkeys((s.device_id for s in streams), 0)
    stop, replay_done = threading.Event(), threading.Event()
    workdir = Path(tempfile.mkdtemp(prefix="har-stream-demo-"))
    code = 0
    with ExitStack() as stack:
        if embedded:
            from har_stream.tools.broker import EmbeddedBroker

            broker = stack.enter_context(EmbeddedBroker())
            settings = dataclasses.replace(settings, kafka=dataclasses.replace(
                settings.kafka, bootstrap_servers=broker.bootstrap_servers))
            print(f"embedded broker on {broker.bootstrap_servers}")
        else:
            print(f"on {settings.kafka.bootstrap_servers}: topics {settings.topics.sensor_topic}, "
                  f"{settings.topics.activity_topic}, …, group {settings.group_id}")
        try:
            admin = make_admin(settings.kafka)
        except BrokerUnavailable as exc:
            print(f"har-stream demo: {exc}", file=sys.stderr)
            return 3
        try:
            prepare_service_topics(admin, settings.topics)
        finally:
            close_quietly(admin)
        metrics_address = settings.metrics_address
        host, port = metrics_host_port(metrics_address)
        if port == 0 or not port_is_free(metrics_address):
            from har_stream.tools.broker import free_port

            metrics_address = f"{host}:{free_port(host)}"
            if port:
                print(f"{settings.metrics_address} is taken; metrics on {metrics_address}")
        metrics_url = f"http://{metrics_address}/metrics"
        log_path = workdir / "recognizer.log"
        recognizer = stack.enter_context(recognizer_process(
            settings, metrics_address, dict(os.environ), log_path))
        print(f"recognizer starting (log: {log_path}); metrics on {metrics_url}")
        deadline = time.monotonic() + 90
        while assigned_partitions(metrics_address) < 1:
            if recognizer.poll() is not None or time.monotonic() > deadline:
                print(f"the recognizer did not start:\n{tail(log_path)}", file=sys.stderr)
                return 1
            time.sleep(0.2)
        from har_stream.kafka.ports import Partition

        producer = make_producer(settings.kafka, linger_ms=20)
        stack.callback(close_quietly, producer)
        reader = make_consumer(settings.kafka, None, fetch_max_wait_ms=100)
        stack.callback(close_quietly, reader)
        partitions = [Partition(settings.topics.activity_topic, p)
                      for p in sorted(producer.partitions_for(settings.topics.activity_topic))]
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)

        def on_sent(index: int, batch: Any) -> None:
            sent[batch.device_id] += len(batch.samples)

        def simulate() -> None:
            try:
                replay(producer, settings.topics.sensor_topic, streams,
                       settings.samples_per_message, settings.speed, names, stop,
                       settings.duration, on_sent)
            finally:
                replay_done.set()

        print(f"replaying {len(streams)} test recordings at "
              f"{'full speed' if not settings.speed else f'{settings.speed:g}x real time'}"
              f"{f' for at most {settings.duration:g} s' if settings.duration else ''}")
        simulator = threading.Thread(target=simulate, name="simulator", daemon=True)
        simulator.start()
        stack.callback(simulator.join, 10)
        stack.callback(stop.set)
        try:
            watch(reader, board, sent, replay_done, metrics_url,
                  alive=lambda: recognizer.poll() is None)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping the simulator, the recognizer and the broker")
            code = 130
        stop.set()
        if recognizer.poll() is not None:
            print(f"the recognizer stopped unexpectedly:\n{tail(log_path)}", file=sys.stderr)
            code = 1
    print(f"\n{board.summary()} — {sum(sent.values()):,} samples replayed")
    return code
