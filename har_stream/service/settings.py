"""Settings of `har-stream run`, a frozen dataclass built once from flags and `HAR_*` variables.

Every field is declared with `option(...)`: its default, its help text and whether it is a
secret. From that one declaration come the command-line flag (`--field-name`), the
environment variable (`HAR_FIELD_NAME`) and the `--help` line showing both. Precedence:
flag, then environment, then default. Only the command line passes `os.environ` in; the
rest of the code receives a finished, immutable object.

Every field may also declare its valid values (`at_least`, `above`, `at_most`, `off`,
`form`; see `core.option_rules`): they are checked when the settings are built, before anything
starts, together with the relations between fields (`__post_init__`); a value that breaks
one raises `SettingsError` naming the variable and the rule. Every number must be finite.

Secrets (passwords) never appear in `repr`, in logs or in `--help` output.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field

from har_stream.core import option_rules
from har_stream.core.codec import Limits
from har_stream.core.option_rules import SettingsError, check_fields, env_name
from har_stream.core.options import (
    add_options,
    flag_name,
    masked_repr,
    nested_settings,
    option,
    options_from,
    secret_values,
)
from har_stream.core.transitions import SmoothingSettings
from har_stream.kafka.settings import COMPRESSION_TYPES, KafkaSettings, TopicSettings

__all__ = [  # the settings API the service's callers use, whichever module defines each name
    "KafkaSettings", "Settings", "SettingsError", "TopicSettings", "add_options", "env_name",
    "flag_name", "metrics_host_port", "nested_settings", "option", "options_from",
    "secret_values", "settings_from",
]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
INPUT_LIMITS = Limits()
"""The codec's defaults: the service's input limits default to them (one place)."""
SMOOTHING = SmoothingSettings()
"""The smoother's defaults (chosen in docs/SUBSCRIBERS.md): the service's default to them."""
DEVICE_RECORDS = ("poll", "checkpoint")


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
    max_message_bytes: int = option(INPUT_LIMITS.max_message_bytes,
                                    "largest sensor message accepted (bytes)", at_least=1)
    max_samples_per_message: int = option(INPUT_LIMITS.max_samples,
                                          "most samples in one sensor message", at_least=1)
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
    hold_windows: int = option(SMOOTHING.hold_windows, "activity changes: windows a new "
                               "activity must hold before it is entered (2 or more: fewer "
                               "blips, each change later)", at_least=1, at_most=1000)
    enter_confidence: float = option(SMOOTHING.enter_confidence, "activity changes: a window "
                                     "this confident enters its activity at once (above 1: "
                                     "never)", at_least=0, at_most=2)
    change_max_gap_ms: int = option(SMOOTHING.max_gap_ms, "activity changes: stream time "
                                    "between two windows beyond which a run starts afresh",
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


def metrics_host_port(address: str) -> tuple[str, int]:
    """Split 'host:port' (port 0 lets the OS choose); ValueError with the reason otherwise."""
    return option_rules.host_port(address, lowest_port=0)


def settings_from(args: argparse.Namespace | None, env: Mapping[str, str]) -> Settings:
    """The service settings from parsed `run` flags and an environment mapping."""
    return options_from(Settings, args, env)
