"""Settings of the service, as frozen dataclasses built once from flags and `HAR_*` variables.

Every field is declared with `option(...)`: its default, its help text and whether it is a
secret. From that one declaration come the command-line flag (`--field-name`), the
environment variable (`HAR_FIELD_NAME`) and the `--help` line showing both. Precedence:
flag, then environment, then default. Only the command line passes `os.environ` in; the
rest of the code receives a finished, immutable object.

Every field may also declare its valid values (`at_least`, `above`, `at_most`, `off`,
`form`; see `settings_rules`): they are checked when the settings are built, before anything
starts, together with the relations between fields (`__post_init__`); a value that breaks
one raises `SettingsError` naming the variable and the rule. Every number must be finite.

Secrets (passwords) never appear in `repr`, in logs or in `--help` output.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from har_stream.service import settings_rules
from har_stream.service.settings_rules import SettingsError, check_fields, env_name

MASK = settings_rules.MASK
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSION_TYPES = ("none", "gzip", "lz4", "zstd", "snappy")
PRODUCER_CLIENTS = ("librdkafka", "kafka-python")
CONSUMER_CLIENTS = ("librdkafka", "kafka-python")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEVICE_RECORDS = ("poll", "checkpoint")
_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off", ""))

T = TypeVar("T")


def option(default: Any, help: str, *, kind: type | None = None, secret: bool = False,
           choices: tuple[str, ...] | None = None, at_least: float | None = None,
           above: float | None = None, at_most: float | None = None, off: str | None = None,
           form: str | None = None) -> Any:
    """A settings field: default, help, value type (inferred from the default), secrecy and
    valid values: bounds, what the value that switches it off (0 or '') means, or a form
    from `settings_rules.FORMS`."""
    kind = kind or type(default)
    return field(default=default, metadata={
        "help": help, "kind": kind, "secret": secret, "choices": choices, "at_least": at_least,
        "above": above, "at_most": at_most, "off": off, "form": form})


def _mask(value: object) -> str:
    return repr(None) if value is None else repr(MASK)


def masked_repr(obj: object) -> str:
    """`Class(field=value, ...)` with every secret field's value replaced by '***'."""
    parts = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        shown = _mask(value) if f.metadata.get("secret") else repr(value)
        parts.append(f"{f.name}={shown}")
    return f"{type(obj).__name__}({', '.join(parts)})"


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
            settings_rules.check_files(self, ("ssl_cafile", "ssl_certfile", "ssl_keyfile"))

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


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """Service: consumer group, checkpoints, device state, model, metrics.

    Everything `har-stream run` needs, with the Kafka and topic settings nested; built by
    `settings_from` (flags, then environment, then defaults).
    """

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    group_id: str = option("har-stream", "consumer group: processes with the same group share "
                                         "the partitions", form="not empty")
    max_poll_records: int = option(5000, "most sensor messages per poll (one recognition step "
                                         "each; larger polls cost less per message)",
                                   at_least=1, at_most=1_000_000)
    poll_timeout_ms: int = option(200, "longest wait for messages in one poll", at_least=1,
                                  at_most=60_000)
    fetch_max_wait_ms: int = option(25, "longest time the broker may hold a fetch to fill it "
                                        "(kafka-python's 500 ms default adds that much latency)",
                                    at_least=0, at_most=300_000)
    session_timeout_ms: int = option(
        10000, "consumer group session timeout (a Kafka broker also refuses values outside "
        "its group.min/max.session.timeout.ms, 6,000..1,800,000 by default)",
        at_least=1000, at_most=1_800_000)
    heartbeat_interval_ms: int = option(3000, "consumer group heartbeat interval (at most a "
                                              "third of the session timeout)", at_least=1)
    max_poll_interval_ms: int = option(300000, "longest time between polls before the group "
                                               "considers this member dead",
                                       at_least=1000, at_most=86_400_000)
    linger_ms: int = option(5, "producer batching delay", at_least=0, at_most=900_000)
    compression_type: str = option("none", "compression of produced records",
                                   choices=COMPRESSION_TYPES)
    commit_interval_s: float = option(
        5.0, "checkpoint period: flush output, snapshot touched devices, commit offsets "
        "(0 = after every poll); a crash replays at most this much input",
        at_least=0, at_most=3600)
    produce_timeout_s: float = option(30.0, "longest wait for the broker to acknowledge the "
                                            "output of a checkpoint before consumption pauses",
                                      above=0)
    restore_timeout_s: float = option(120.0, "longest time to read the state changelog after "
                                             "an assignment", above=0)
    idle_ttl_s: float = option(3600.0, "evict a device's state after this many idle seconds "
                                       "(0 = never)", off="never", above=0)
    eviction_interval_s: float = option(30.0, "how often to look for idle devices", above=0)
    model: str = option("", "model directory, or module:function returning a model "
                            "(empty: the shipped model)", form="model")
    max_devices: int = option(100_000, "most devices with state in this process; messages of "
                                       "further new devices go to the dead-letter topic, "
                                       "reason too_many_devices (0 = no limit)",
                              off="no limit", at_least=1)
    max_message_bytes: int = option(256 * 1024, "largest sensor message accepted (bytes)",
                                    at_least=1)
    max_samples_per_message: int = option(500, "most samples in one sensor message",
                                          at_least=1)
    reorder_samples: int = option(
        256, "per device, hold a message that arrives ahead of a gap back while it ends within "
        "this many samples of the expected seq, so out-of-order messages are put back in "
        "order", off="off", at_least=1, at_most=3000)
    max_rate_factor: float = option(20.0, "flag a device whose samples arrive faster than "
                                          "50 Hz times this, on broker timestamps (0 = off)",
                                    off="off", at_least=1)
    max_produce_attempts: int = option(3, "sends of an output record the broker refuses (e.g. "
                                          "too large) before a dead letter replaces it",
                                       at_least=1, at_most=1000)
    metrics_address: str = option("127.0.0.1:9108", "host:port of the Prometheus /metrics "
                                                    "endpoint (empty: no endpoint)",
                                  off="no endpoint", form="host:port")
    log_level: str = option("INFO", "log level", choices=LOG_LEVELS)
    subscriber_outputs: bool = option(True, "publish activity changes, device records and "
                                            "daily totals (docs/SUBSCRIBERS.md)")
    device_records: str = option(
        "poll", "when device records are published: poll (each device with windows in a "
        "poll, after it) or checkpoint (each device's latest, once per checkpoint: fewer "
        "records for large fleets, status up to HAR_COMMIT_INTERVAL_S old)",
        choices=DEVICE_RECORDS)
    hold_windows: int = option(2, "activity changes: windows a new activity must hold before "
                                  "it is entered", at_least=1, at_most=1000)
    enter_confidence: float = option(0.9, "activity changes: a window this confident enters "
                                          "its activity at once (above 1: never)",
                                     at_least=0, at_most=2)
    change_max_gap_ms: int = option(10_000, "activity changes: stream time between two "
                                            "windows beyond which a run starts afresh",
                                    at_least=0, at_most=86_400_000)
    day_utc_offset_minutes: int = option(0, "daily totals: days start at midnight of UTC plus "
                                            "this many minutes (fixed, no daylight saving)",
                                         at_least=-1439, at_most=1439)

    def __post_init__(self) -> None:
        """The rule of every field, then the relations between fields (docs/SERVICE.md);
        the topic prefix is applied to the topics and the group here, once."""
        check_fields(self)
        prefix = self.topics.topic_prefix
        if prefix:
            object.__setattr__(self, "topics", self.topics.prefixed())
            object.__setattr__(self, "group_id", prefix + self.group_id)
        if 3 * self.heartbeat_interval_ms > self.session_timeout_ms:
            raise SettingsError(
                f"HAR_HEARTBEAT_INTERVAL_MS={self.heartbeat_interval_ms} must be at most a third "
                f"of HAR_SESSION_TIMEOUT_MS={self.session_timeout_ms}: the group expels a "
                "member that sends no heartbeat for a session timeout, so a third lets it miss "
                "two")
        if self.work_budget_s <= 0:
            raise SettingsError(
                f"HAR_MAX_POLL_INTERVAL_MS={self.max_poll_interval_ms} must exceed the longest "
                f"pause between two polls outside the work itself: 2 x HAR_PRODUCE_TIMEOUT_S "
                f"({self.produce_timeout_s:g} s) + HAR_RESTORE_TIMEOUT_S "
                f"({self.restore_timeout_s:g} s); otherwise the group expels this member "
                "while it waits, over and over (a rebalance storm)")
        if (self.kafka.consumer_client == "librdkafka"
                and self.max_poll_interval_ms < self.session_timeout_ms):
            raise SettingsError(
                f"HAR_MAX_POLL_INTERVAL_MS={self.max_poll_interval_ms} must be at least "
                f"HAR_SESSION_TIMEOUT_MS={self.session_timeout_ms} with the librdkafka "
                "consumer")

    @property
    def work_budget_s(self) -> float:
        """Seconds of work one poll may bring so that polls stay within max_poll_interval_ms:
        half of what the checkpoint (two flushes) and a restore leave (see pacing.py)."""
        return (self.max_poll_interval_ms / 1000.0 - 2 * self.produce_timeout_s
                - self.restore_timeout_s) / 2

    @property
    def metrics_host(self) -> str:
        return metrics_host_port(self.metrics_address)[0]

    @property
    def metrics_port(self) -> int:
        return metrics_host_port(self.metrics_address)[1]

    __repr__ = masked_repr


def secret_values(obj: object) -> list[str]:
    """The values of every secret field of a settings object and of its nested settings."""
    values: list[str] = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            values.extend(secret_values(value))
        elif f.metadata.get("secret") and value:
            values.append(str(value))
    return values


def metrics_host_port(address: str) -> tuple[str, int]:
    """Split 'host:port' (port 0 lets the OS choose); ValueError with the reason otherwise."""
    return settings_rules.host_port(address, lowest_port=0)


# ---------------------------------------------------------------------------------------------
# flags and environment variables, derived from the declarations above


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _nested(f: dataclasses.Field[Any]) -> type | None:
    """The settings class of a nested-settings field (declared with a default_factory)."""
    factory = f.default_factory
    return factory if isinstance(factory, type) and dataclasses.is_dataclass(factory) else None


def add_options(parser: argparse.ArgumentParser, cls: type,
                overrides: Mapping[str, Any] | None = None) -> None:
    """Add one flag per field of `cls` and of its nested settings, a group per class.

    Flags default to None so that `options_from` can tell a given flag from an absent one;
    the help line shows the real default and the environment variable. `overrides` replaces
    defaults for one command (e.g. the demo's own group id).
    """
    for f in dataclasses.fields(cls):
        sub = _nested(f)
        if sub is not None:
            add_options(parser, sub, overrides)
    title = (cls.__doc__ or cls.__name__).strip().splitlines()[0].rstrip(".")
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        if "kind" in f.metadata:
            _add_flag(group, f, (overrides or {}).get(f.name, f.default))


def _add_flag(group: Any, f: dataclasses.Field[Any], default: Any) -> None:
    meta = f.metadata
    shown = "" if default is None or default == "" or meta["secret"] else f"; default: {default}"
    hint = " (prefer the variable: flags are visible to other users)" if meta["secret"] else ""
    help_text = f"{meta['help']}{hint} [env {env_name(f.name)}{shown}]".replace("%", "%%")
    if meta["kind"] is bool:
        group.add_argument(flag_name(f.name), dest=f.name, default=None,
                           action=argparse.BooleanOptionalAction, help=help_text)
    else:
        group.add_argument(flag_name(f.name), dest=f.name, default=None, type=meta["kind"],
                           choices=meta["choices"], help=help_text,
                           metavar=None if meta["choices"] else f.name.split("_")[-1].upper())


def _parse(f: dataclasses.Field[Any], text: str) -> Any:
    kind, name = f.metadata["kind"], env_name(f.name)
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise SettingsError(f"{name}={text!r} is not a boolean (use true/false)")
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a valid {kind.__name__}") from None
    choices = f.metadata["choices"]
    if choices and value not in choices:
        raise SettingsError(f"{name}={text!r}: choose one of {', '.join(choices)}")
    return value


def options_from(cls: type[T], args: argparse.Namespace | None, env: Mapping[str, str],
                 overrides: Mapping[str, Any] | None = None) -> T:
    """Build `cls` from parsed flags, then environment variables, then defaults.

    Raises ValueError with the offending variable or field in the message.
    """
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        sub = _nested(f)
        if sub is not None:
            values[f.name] = options_from(sub, args, env, overrides)
            continue
        if "kind" not in f.metadata:
            continue
        given = getattr(args, f.name, None) if args is not None else None
        if given is not None:
            values[f.name] = given
        elif env.get(env_name(f.name)) not in (None, ""):
            values[f.name] = _parse(f, env[env_name(f.name)])
        elif overrides and f.name in overrides:
            values[f.name] = overrides[f.name]
    return cls(**values)


def settings_from(args: argparse.Namespace | None, env: Mapping[str, str]) -> Settings:
    """The service settings from parsed `run` flags and an environment mapping."""
    return options_from(Settings, args, env)
