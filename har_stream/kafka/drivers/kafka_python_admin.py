"""The admin port on kafka-python's KafkaAdminClient, for both client libraries.

One admin, not one per library: topic creation and description are rare, off the service's
path, and librdkafka's admin adds nothing there; kafka-python's connects at construction
(so a dead address fails at start, `connect.build`), and the raw reader (`raw_fetch`) needs
kafka-python's connection anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from har_stream.kafka.drivers.errors import TOPIC_EXISTS, UNKNOWN_TOPIC, failure
from har_stream.kafka.drivers.kafka_python_producer import as_failure
from har_stream.kafka.ports import TopicLayout

log = logging.getLogger(__name__)


class KafkaPythonAdmin:
    """`ports.Admin` on kafka-python."""

    def __init__(self, client: KafkaAdminClient) -> None:
        self.client = client

    def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        names = list(topics)
        if not names:
            return {}
        try:
            described = self.client.describe_topics(names)
        except KafkaError as exc:
            raise as_failure(exc) from None
        return {topic["name"]: len(topic["partitions"]) for topic in described
                if topic["error_code"] == 0 and topic["partitions"]}

    def create_topics(self, layouts: Mapping[str, TopicLayout]) -> set[str]:
        """Create the topics; those created now. Another process creating one at the same
        moment is no error; any other refusal raises (with the broker's code)."""
        if not layouts:
            return set()
        try:
            response = self.client.create_topics(
                {name: {"num_partitions": layout.partitions,
                        "replication_factor": layout.replication_factor,
                        "configs": dict(layout.configs)} for name, layout in layouts.items()},
                raise_errors=False)
        except KafkaError as exc:
            raise as_failure(exc) from None
        created = set()
        for topic in response["topics"]:
            code = topic["error_code"]
            if code not in (0, TOPIC_EXISTS):
                raise failure(code, f"cannot create topic {topic['name']}: error {code} "
                                    f"{topic.get('error_message') or ''}".rstrip())
            if code == 0:
                created.add(topic["name"])
                log.info("created topic %s (%d partitions)", topic["name"],
                         layouts[topic["name"]].partitions)
        return created

    def delete_topics(self, topics: Iterable[str]) -> None:
        """Delete the topics; one that does not exist is no error."""
        names = list(topics)
        if not names:
            return
        try:
            response = self.client.delete_topics(names, raise_errors=False)
        except KafkaError as exc:
            raise as_failure(exc) from None
        for topic in response["topics"]:
            code = topic["error_code"]
            if code not in (0, UNKNOWN_TOPIC):
                raise failure(code, f"cannot delete topic {topic['name']}: error {code}")

    def close(self) -> None:
        self.client.close()

