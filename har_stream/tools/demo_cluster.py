"""The demo's cluster on one machine: broker, topics, recognizer, simulator, started in order.

`run_demo` starts what the demo needs and stops it in reverse order however the demo ends
(replay finished, Ctrl-C, the recognizer died): the embedded broker (unless the settings name
a cluster), the service topics, `har-stream run` in a child process of its own session, a
reader of the activity topic and the simulator in a thread. Kept apart from the command line
(`demo`), which checks settings and data first, and from the scoring (`demo_score`) and the
screen (`demo_view`) it feeds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from har_stream.core.options import flag_name
from har_stream.kafka.settings import TOPIC_FIELDS
from har_stream.service.settings import metrics_host_port
from har_stream.tools.broker import die_with_parent
from har_stream.tools.demo_score import Scoreboard, window_truth
from har_stream.tools.demo_settings import DemoSettings
from har_stream.tools.demo_view import watch


def port_is_free(address: str) -> bool:
    """Whether the recognizer could serve metrics on `address` (else the demo picks a port)."""
    host, port = metrics_host_port(address)
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def recognizer_command(settings: DemoSettings, metrics_address: str) -> list[str]:
    """`har-stream run` on the demo's topics and group, quick to join and to notice a stop;
    the demo creates the topics itself (so the recognizer must not)."""
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
    """Partitions the recognizer owns, from its metrics (0 until it serves them): the demo
    replays only once the recognizer has joined, so no window is missed at the start."""
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
    """The end of a child's log, shown when it failed."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])



def run_demo(settings: DemoSettings, embedded: bool, streams: list[Any],
             names: dict[int, str]) -> int:
    """Start the broker (if `embedded`), topics, recognizer, reader and simulator; watch until
    the replay is scored; stop them in reverse order; print the accuracy. The exit code."""
    import dataclasses

    from har_stream.kafka.clients import (
        BrokerUnavailable,
        close_quietly,
        make_admin,
        make_consumer,
        make_producer,
        prepare_service_topics,
    )
    from har_stream.kafka.ports import Partition
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
