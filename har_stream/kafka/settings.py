"""How to reach the Kafka cluster and which topics to use: the settings the Kafka clients need.

Declared with `core.options.option` (flag, `HAR_*` variable, valid values); nested in the
service's `Settings` and in the simulator's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from har_stream.core import option_rules
from har_stream.core.option_rules import SettingsError, check_fields
from har_stream.core.options import masked_repr, option

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSION_TYPES = ("none", "gzip", "lz4", "zstd", "snappy")
PRODUCER_CLIENTS = ("librdkafka", "kafka-python")
CONSUMER_CLIENTS = ("librdkafka", "kafka-python")


@dataclass(frozen=True, slots=True, repr=False)
class KafkaSettings:
    """How to reach the Kafka cluster, including TLS and SASL."""

    bootstrap_servers: str = option("127.0.0.1:9092", "Kafka bootstrap servers, host:port[,...]",
                                    form="host:port list")
    client_id: str = option("har-stream", "client id reported to the brokers", form="not empty")
    connect_timeout_s: float = option(
        15.0, "give up with an error when no broker answers within this many seconds",
        above=0, at_most=3600)
    security_protocol: str = option("PLAINTEXT", "protocol to talk to the brokers",
                                    choices=SECURITY_PROTOCOLS)
    ssl_cafile: str | None = option(None, "CA bundle (PEM) to verify the brokers", kind=str,
                                    form="file")
    ssl_certfile: str | None = option(None, "client certificate (PEM) for mutual TLS", kind=str,
                                      form="file")
    ssl_keyfile: str | None = option(None, "client private key (PEM) for mutual TLS", kind=str,
                                     form="file")
    ssl_password: str | None = option(None, "password of the client private key", kind=str,
                                      secret=True)
    ssl_check_hostname: bool = option(True, "verify that broker certificates match host names")
    sasl_mechanism: str | None = option(None, "SASL mechanism (with SASL_* protocols)",
                                        kind=str, choices=SASL_MECHANISMS)
    sasl_username: str | None = option(None, "SASL user name", kind=str)
    sasl_password: str | None = option(None, "SASL password", kind=str, secret=True)
    producer_client: str = option(
        "librdkafka", "Kafka client that produces output: librdkafka (confluent-kafka, 8-13x "
        "less CPU per record) or kafka-python", choices=PRODUCER_CLIENTS)
    consumer_client: str = option(
        "librdkafka", "Kafka client that consumes sensor messages: librdkafka (confluent-kafka, "
        "fetches in its own threads, so the loop does not wait for them: more devices per "
        "process) or kafka-python", choices=CONSUMER_CLIENTS)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.security_protocol.startswith("SASL"):
            if not self.sasl_mechanism:
                raise SettingsError(f"HAR_SECURITY_PROTOCOL={self.security_protocol} needs "
                                    "HAR_SASL_MECHANISM")
            if not (self.sasl_username and self.sasl_password):
                raise SettingsError(f"HAR_SECURITY_PROTOCOL={self.security_protocol} needs "
                                    "HAR_SASL_USERNAME and HAR_SASL_PASSWORD")
        elif self.sasl_mechanism:
            raise SettingsError(f"HAR_SASL_MECHANISM is set but HAR_SECURITY_PROTOCOL is "
                                f"{self.security_protocol}; use SASL_PLAINTEXT or SASL_SSL")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise SettingsError("HAR_SSL_CERTFILE and HAR_SSL_KEYFILE go together")

    def check_files(self) -> None:
        """SettingsError unless every TLS file set opens: at start, before any client (not
        when built, as settings may be made where the files are not); a client would retry
        a missing file until the connect timeout, then report the cluster unreachable."""
        if "SSL" in self.security_protocol:
            option_rules.check_files(self, ("ssl_cafile", "ssl_certfile", "ssl_keyfile"))

    __repr__ = masked_repr


TOPIC_FIELDS = ("sensor_topic", "dlq_topic", "activity_topic", "counts_topic", "changelog_topic",
                "changes_topic", "devices_topic", "daily_topic")
"""The topic-name fields of `TopicSettings`."""


@dataclass(frozen=True, slots=True, repr=False)
class TopicSettings:
    """Names of the topics the service reads and writes, and how to create missing ones."""

    sensor_topic: str = option("har.sensor", "input: raw sensor batches (key = device id)",
                               form="topic")
    dlq_topic: str = option("har.sensor.dlq", "dead letters: rejected sensor messages",
                            form="topic")
    activity_topic: str = option("har.activity", "output: one result per window", form="topic")
    counts_topic: str = option("har.activity-counts", "output: running per-activity counts",
                               form="topic")
    changelog_topic: str = option("har.state-changelog",
                                  "per-device state snapshots (compacted; same partition "
                                  "count as the sensor topic)", form="topic")
    changes_topic: str = option("har.activity-changes", "output: smoothed activity changes",
                                form="topic")
    devices_topic: str = option("har.devices", "output: each device's current status "
                                               "(compacted)", form="topic")
    daily_topic: str = option("har.daily-totals", "output: per-activity totals of each "
                                                  "finished day", form="topic")
    topic_prefix: str = option("", "prefix of every topic name above and of the consumer "
                                   "group: isolates one deployment on a shared cluster "
                                   "(applied when the settings are built)",
                               off="no prefix", form="topic")
    create_topics: bool = option(True, "create missing topics at start")
    partitions: int = option(6, "partitions of topics created at start", at_least=1,
                             at_most=10_000)
    replication_factor: int = option(1, "replication factor of topics created at start",
                                     at_least=1, at_most=100)

    def __post_init__(self) -> None:
        check_fields(self)
        names = self.names()
        if len(set(names)) != len(names):
            raise SettingsError(f"topic names must differ (HAR_*_TOPIC): {names}")

    def prefixed(self) -> TopicSettings:
        """These settings with `topic_prefix` put in front of every name, and consumed (so a
        copy is not prefixed twice); SettingsError when a prefixed name is not legal."""
        if not self.topic_prefix:
            return self
        names = {name: self.topic_prefix + getattr(self, name) for name in TOPIC_FIELDS}
        return dataclasses.replace(self, topic_prefix="", **names)

    def names(self) -> list[str]:
        """Every topic of the service: the one list topic creation and checks use."""
        return [getattr(self, name) for name in TOPIC_FIELDS]

    __repr__ = masked_repr
