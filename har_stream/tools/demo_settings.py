"""The demo's settings: what to replay, how fast, where; a demo on a shared cluster gets topics
of its own (`unique_prefix`). Apart from the command, so that the cluster it starts
(`demo_cluster`) can take them without importing the command line."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from har_stream.core.option_rules import check_fields
from har_stream.core.options import masked_repr, option
from har_stream.kafka.settings import KafkaSettings, TopicSettings


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
