"""The network around a real broker for the integration tests: a relay that can cut every
connection (an unreachable broker whose state survives), a mutual-TLS front door with a
throwaway CA, and a broker that advertises another port than it listens on."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


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
        with contextlib.suppress(OSError):  # wakes a blocked accept (close alone may not)
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    close = cut

    def _accept(self, server: Any) -> None:
        while True:
            generation = self._generation  # as of before the accept: one a cut ends is old
            try:
                raw, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw, generation), daemon=True).start()

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
