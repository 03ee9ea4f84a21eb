"""In-memory Kafka stand-ins for the reliability, fuzz and security tests of the loop.

Unlike the recording fakes of tests/unit/test_app.py these are built for volume (tens of
thousands of devices and messages): the producer keeps only what a test asks it to keep, the
consumer serves a queue with the poll's `max_records`, and the changelog keeps the latest
snapshot per device. The service code under test is the real `app.Service`.
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka.future import Future

from har_stream.kafka.ports import Acknowledged, KafkaTimeout, Partition
from har_stream.service.changelog import HEADER_COVERS_OFFSET, StoredState


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list = field(default_factory=list)
    timestamp: int = 1_700_000_000_000


def Metadata(topic: str, partition: int, offset: int) -> Acknowledged:
    return Acknowledged(topic, partition, offset, 1_700_000_000_000)


TP = Partition


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list
    partition: int


class LeanProducer:
    """Acknowledges at flush; keeps records of the topics in `keep` (all: None), and the
    changelog as a dict. `refuse(record) -> exception or None` simulates broker refusals;
    `refuse_at_send` the same, raised by `send` itself (as kafka-python does for records
    larger than max_request_size)."""

    def __init__(self, changelog_topic: str, keep: set[str] | None = None) -> None:
        self.changelog_topic = changelog_topic
        self.keep = keep
        self.sent: dict[str, list[Sent]] = defaultdict(list)
        self.snapshots: dict[str, StoredState] = {}
        self.refuse: Callable[[Sent], BaseException | None] = lambda _record: None
        self.refuse_at_send: Callable[[Sent], BaseException | None] = lambda _record: None
        self.keep_snapshot: Callable[[str], bool] = lambda _device: True
        self.flush_blocks = False  # True: flush times out (an unreachable broker)
        self._pending: list[tuple[Future, Sent]] = []
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)
        self._lock = threading.Lock()
        self.sends = 0

    def send(self, topic: str, key: Any = None, value: Any = None, headers: Any = None,
             partition: int | None = None) -> Future:
        record = Sent(topic, key, value, list(headers or []), partition or 0)
        error = self.refuse_at_send(record)
        if error is not None:
            raise error
        self.sends += 1
        future = Future()
        with self._lock:
            self._pending.append((future, record))
        return future

    def serve(self) -> None:
        pass

    def flush(self, timeout_s: float | None = None) -> None:
        if self.flush_blocks:
            raise KafkaTimeout(f"flush not done within {timeout_s} s")
        with self._lock:
            pending, self._pending = self._pending, []
        for future, record in pending:
            error = self.refuse(record)
            if error is not None:
                future.failure(error)
                continue
            offset = self._offsets[record.topic, record.partition]
            self._offsets[record.topic, record.partition] += 1
            if record.topic == self.changelog_topic:
                device = record.key.decode()
                if not self.keep_snapshot(device):  # a real changelog keeps it, out of process
                    future.success(Metadata(record.topic, record.partition, offset))
                    continue
                covers = int(dict(record.headers)[HEADER_COVERS_OFFSET])
                self.snapshots[device] = StoredState(device, record.partition, record.value,
                                                     covers, offset, 1_700_000_000_000)
            elif self.keep is None or record.topic in self.keep:
                self.sent[record.topic].append(record)
            future.success(Metadata(record.topic, record.partition, offset))

    def pending(self) -> int:
        return len(self._pending)


class QueueConsumer:
    """Serves queued records per poll (at most `max_records`), firing rebalance events first.

    `feed(records)` appends; `rebalance(kind, partitions)` queues an event for the next poll.
    Paused partitions are not served. `connections` > 0: connected; `ids`: topic ids.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.queue: deque[Record] = deque()
        self.listener: Any = None
        self.events: list[tuple[str, list[int]]] = []
        self.committed_offsets: dict[int, int] = {}
        self.paused: set[int] = set()
        self.polls: list[int | None] = []  # max_records of every poll
        self.connections = 1.0
        self.ids: dict[str, str] = {}

    def feed(self, records: Iterable[Record]) -> None:
        self.queue.extend(records)

    def rebalance(self, kind: str, partitions: list[int]) -> None:
        self.events.append((kind, partitions))

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        self.polls.append(max_records)
        for kind, partitions in self.events:
            getattr(self.listener, f"on_partitions_{kind}")([TP(self.topic, p)
                                                             for p in partitions])
        self.events = []
        polled: dict[TP, list[Record]] = defaultdict(list)
        taken = 0
        kept: deque[Record] = deque()
        while self.queue and taken < (max_records or 500):
            record = self.queue.popleft()
            if record.partition in self.paused:
                kept.append(record)
                continue
            polled[TP(record.topic, record.partition)].append(record)
            taken += 1
        self.queue.extendleft(reversed(kept))
        return dict(polled)

    def committed(self, tp: Any) -> int | None:
        return self.committed_offsets.get(tp.partition)

    def commit(self, offsets: dict, timeout_s: float = 30.0) -> None:
        for tp, offset in offsets.items():
            self.committed_offsets[tp.partition] = offset

    def highwater(self, tp: Any) -> None:
        return None

    def assignment(self) -> set[TP]:
        return {TP(self.topic, p) for p in range(8)}

    def pause(self, *tps: TP) -> None:
        self.paused.update(tp.partition for tp in tps)

    def resume(self, *tps: TP) -> None:
        self.paused.difference_update(tp.partition for tp in tps)

    def connected(self) -> bool:
        return self.connections > 0

    def topics(self) -> set[str]:
        return set(self.ids) or {self.topic}

    def topic_id(self, topic: str) -> str | None:
        return self.ids.get(topic)


class DictChangelog:
    """`ChangelogReader` over a LeanProducer's latest snapshots."""

    def __init__(self, producer: LeanProducer) -> None:
        self.producer = producer
        self.record_reads = 0

    def read_partitions(self, partitions: Iterable[int]) -> dict[str, StoredState]:
        wanted = set(partitions)
        return {d: s for d, s in self.producer.snapshots.items() if s.partition in wanted}

    def read_records(self, locations: dict) -> dict[str, StoredState]:
        self.record_reads += len(locations)
        return {d: self.producer.snapshots[d] for d in locations
                if d in self.producer.snapshots}


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_service(settings: Any, model: Any, keep: set[str] | None = None,
                 clock: Clock | None = None) -> tuple[Any, QueueConsumer, LeanProducer]:
    """A real `app.Service` wired to the stand-ins above (partitions 0..7 assigned)."""
    from har_stream.service.loop import Service

    consumer = QueueConsumer(settings.topics.sensor_topic)
    producer = LeanProducer(settings.topics.changelog_topic, keep)
    service = Service(settings, model, consumer, producer, DictChangelog(producer),
                      clock=clock or Clock(), wall=lambda: 1_700_000_000.0)
    consumer.listener = service.events
    consumer.rebalance("assigned", list(range(8)))
    return service, consumer, producer


def drain(service: Any, consumer: QueueConsumer, checkpoint_every: int = 1) -> None:
    """Step until the queue is empty, checkpointing every `checkpoint_every` steps."""
    steps = 0
    while consumer.queue or consumer.events:
        service.step()
        steps += 1
        if steps % checkpoint_every == 0:
            service.checkpoint()
    service.checkpoint()


# --- TLS -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca: str  # PEM of the CA that signed the others
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str  # encrypted with `client_key_password`
    client_key_password: str


def make_certificates(directory: Any, client_key_password: str = "key-pass-123") -> Certificates:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate
    whose key is encrypted (for mutual TLS with `ssl_password`), as PEM files."""
    import datetime
    import ipaddress
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "har-stream test CA")])

    def issue(subject: str, key: Any, ca: bool = False, sans: list | None = None) -> Any:
        builder = (x509.CertificateBuilder()
                   .subject_name(ca_name if ca else x509.Name(
                       [x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(ca_name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    def write(name: str, data: bytes) -> str:
        (directory / name).write_bytes(data)
        return str(directory / name)

    pem = serialization.Encoding.PEM
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    server = issue("127.0.0.1", server_key, sans=[
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    client = issue("har-stream", client_key)
    return Certificates(
        ca=write("ca.pem", issue("", ca_key, ca=True).public_bytes(pem)),
        server_cert=write("server.pem", server.public_bytes(pem)),
        server_key=write("server.key", server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
        client_cert=write("client.pem", client.public_bytes(pem)),
        client_key=write("client.key", client_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(client_key_password.encode()))),
        client_key_password=client_key_password)


class Relay:
    """Forwards connections on 127.0.0.1:`port` to a broker port, byte for byte.

    `cut()` drops every connection and stops listening (the broker is unreachable, its
    state intact: what clients see when a Kafka broker restarts with its data); `restore()`
    listens again on the same port. With `tls` set, connections are TLS up to here.
    """

    def __init__(self, upstream_port: int, port: int, tls: Any = None) -> None:
        self.upstream_port = upstream_port
        self.port = port
        self.tls = tls
        self.handshakes = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._sockets: list[Any] = []
        self._server: Any = None
        self._generation = 0  # bumped by every cut: connections of an older one are closed
        self.restore()

    def restore(self) -> None:
        import socket

        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True,
                         name="relay").start()

    def cut(self) -> None:
        import socket

        with self._lock:
            doomed, self._sockets = self._sockets, []
            self._generation += 1
        self._server.close()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    close = cut

    def _accept(self, server: Any) -> None:
        while True:
            try:
                raw, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw, self._generation),
                             daemon=True).start()

    def _serve(self, raw: Any, generation: int) -> None:
        import socket
        import ssl

        client = raw
        if self.tls is not None:
            try:
                raw.settimeout(10)
                client = self.tls.wrap_socket(raw, server_side=True)
                client.settimeout(None)
            except (ssl.SSLError, OSError):
                self.refused += 1
                raw.close()
                return
            self.handshakes += 1
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        with self._lock:
            if generation != self._generation:  # accepted just before a cut
                client.close()
                upstream.close()
                return
            self._sockets += [client, upstream]

        def pump(source: Any, sink: Any) -> None:
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                for end in (source, sink):
                    with contextlib.suppress(OSError):
                        end.close()

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)


class TlsFrontDoor(Relay):
    """TLS on 127.0.0.1:`port` in front of a plaintext broker port, with client certificates
    required (mutual TLS). The embedded broker speaks plaintext only (its `--cert/--key`
    options are accepted but do not start TLS in the shipped build), so the TLS session a
    client negotiates ends here; the bytes inside are forwarded unchanged."""

    def __init__(self, upstream_port: int, certs: Certificates, port: int) -> None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certs.server_cert, certs.server_key)
        context.load_verify_locations(certs.ca)
        context.verify_mode = ssl.CERT_REQUIRED
        super().__init__(upstream_port, port, tls=context)


class AdvertisingBroker:
    """The embedded broker listening on one port while advertising another (the TLS front
    door's), so that clients reconnect through the front door after bootstrapping."""

    def __init__(self, advertised_port: int | None = None, extra: Iterable[str] = ()) -> None:
        """`advertised_port` None: advertise the port it listens on."""
        import subprocess
        import tempfile

        from har_stream.tools.broker import broker_binary, free_port, port_accepts

        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="har-broker-", suffix=".log",  # noqa: SIM115
                                               delete=False)
        self.process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}",
             "--advertised-listener-url",
             f"tcp://127.0.0.1:{advertised_port or self.port}",
             "--storage-engine", "memory://tansu/", *extra],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        import time

        deadline = time.monotonic() + 10
        while not port_accepts("127.0.0.1", self.port):
            assert self.process.poll() is None and time.monotonic() < deadline, "no broker"
            time.sleep(0.02)

    def text(self) -> str:
        import re
        from pathlib import Path

        return re.sub(r"\x1b\[[0-9;]*m", "", Path(self.log.name).read_text(errors="replace"))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()
