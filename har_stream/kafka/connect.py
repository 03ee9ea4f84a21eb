"""How every client of the service reaches the cluster: settings to each library's
configuration, and a construction that gives up after the connect timeout.

A module of its own (not `clients`) so that the drivers and the raw reader (`raw_fetch`)
build their clients without importing the factories that import them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from har_stream.kafka.settings import KafkaSettings

RECONNECT_BACKOFF_MAX_MS = 1000
CONNECT_GRACE_S = 2.0
"""Beyond the connect timeout, how long a client's construction may take before it is given up."""
C = TypeVar("C")

client_log = logging.getLogger("kafka.librdkafka")
"""librdkafka's own log and its client-level errors: under `kafka`, like kafka-python's, so
`logsafe.RepeatFilter` thins a reconnect loop to one line (and a count) per template."""


class BrokerUnavailable(RuntimeError):
    """No broker answered within the connect timeout (the message says what to check)."""


def _servers(kafka: KafkaSettings) -> list[str]:
    """The bootstrap addresses, blanks around and between commas dropped."""
    return [s.strip() for s in kafka.bootstrap_servers.split(",") if s.strip()]


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """kafka-python keyword arguments shared by every client: address, TLS, SASL, timeouts."""
    config: dict[str, Any] = {
        "bootstrap_servers": _servers(kafka),
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "bootstrap_timeout_ms": int(kafka.connect_timeout_s * 1000),
        # after an outage, notice a returning broker within a second (the library's default
        # backs off up to 30 s); one attempt per second per broker costs nothing
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    }
    if "SSL" in kafka.security_protocol:
        config.update(ssl_cafile=kafka.ssl_cafile, ssl_certfile=kafka.ssl_certfile,
                      ssl_keyfile=kafka.ssl_keyfile, ssl_password=kafka.ssl_password,
                      ssl_check_hostname=kafka.ssl_check_hostname)
    if kafka.security_protocol.startswith("SASL"):
        config.update(sasl_mechanism=kafka.sasl_mechanism,
                      sasl_plain_username=kafka.sasl_username,
                      sasl_plain_password=kafka.sasl_password)
    return config


def rdkafka_config(kafka: KafkaSettings) -> dict[str, Any]:
    """librdkafka properties for the connection settings (address, TLS, SASL)."""
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(_servers(kafka)),
        "client.id": kafka.client_id,
        "security.protocol": kafka.security_protocol.lower(),
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
        "socket.connection.setup.timeout.ms": int(kafka.connect_timeout_s * 1000),
    }
    if "SSL" in kafka.security_protocol:
        optional = {"ssl.ca.location": kafka.ssl_cafile,
                    "ssl.certificate.location": kafka.ssl_certfile,
                    "ssl.key.location": kafka.ssl_keyfile,
                    "ssl.key.password": kafka.ssl_password}
        config.update({k: v for k, v in optional.items() if v})
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if kafka.ssl_check_hostname else "none")
    if kafka.security_protocol.startswith("SASL"):
        config.update({"sasl.mechanisms": kafka.sasl_mechanism,
                       "sasl.username": kafka.sasl_username,
                       "sasl.password": kafka.sasl_password})
    return config


def client_error_logger(role: str) -> Callable[[Any], None]:
    """librdkafka's error callback for a client: connection-level errors (e.g. all brokers
    down), which it retries by itself, logged under `role`."""

    def log_error(error: Any) -> None:
        client_log.warning("%s: %s", role, error.str())

    return log_error


def unreachable(kafka: KafkaSettings, what: str, exc: BaseException) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"cannot reach Kafka at {kafka.bootstrap_servers} ({kafka.security_protocol}) "
        f"within {kafka.connect_timeout_s:g} s while creating the {what}: {exc}. Check "
        "--bootstrap-servers / HAR_BOOTSTRAP_SERVERS, that the brokers are running, and "
        "the security settings.")


def build(kafka: KafkaSettings, what: str, factory: Callable[..., C], **config: Any) -> C:
    """Construct a kafka-python client, giving up after the connect timeout whatever it does.

    kafka-python bounds its bootstrap by `bootstrap_timeout_ms` except inside a TLS
    handshake, which it awaits without a deadline: a TLS client facing a plaintext listener
    (or anything that accepts connections and never answers) would hang for ever. So the
    client is built in a daemon thread that is abandoned when the deadline passes.
    """
    from kafka.errors import KafkaTimeoutError

    built: dict[str, Any] = {}

    def construct() -> None:
        try:
            built["client"] = factory(**(client_config(kafka) | config))
        except BaseException as exc:  # re-raised below, in the caller's thread
            built["error"] = exc

    worker = threading.Thread(target=construct, name=f"connect-{what}", daemon=True)
    worker.start()
    worker.join(kafka.connect_timeout_s + CONNECT_GRACE_S)
    if worker.is_alive():
        raise BrokerUnavailable(
            f"no Kafka answer from {kafka.bootstrap_servers} ({kafka.security_protocol}) "
            f"within {kafka.connect_timeout_s:g} s while creating the {what}: connections open "
            "but the handshake never completes. Check that --security-protocol / "
            "HAR_SECURITY_PROTOCOL matches the listener (TLS against a plaintext port hangs "
            "like this) and --bootstrap-servers / HAR_BOOTSTRAP_SERVERS.")
    if "error" in built:
        if isinstance(built["error"], KafkaTimeoutError):
            raise unreachable(kafka, what, built["error"]) from None
        raise built["error"]
    return built["client"]


def never_create_topics(client: C) -> C:
    """Make a kafka-python client's metadata requests refuse to create topics.

    kafka-python 3.0 accepts `allow_auto_create_topics=False` but builds the metadata cache
    that sends the requests without it (its `ClusterMetadata` keeps the default, True;
    measured: a producer so configured still created its topic), so the setting is applied
    to that cache as well.
    """
    clusters = [getattr(getattr(holder, "_manager", None), "cluster", None)
                for holder in (getattr(client, "_client", None), client)]
    for cluster in [*clusters, getattr(client, "_metadata", None)]:  # the producer's
        config = getattr(cluster, "config", None)
        if isinstance(config, dict):
            config["allow_auto_create_topics"] = False
    return client
