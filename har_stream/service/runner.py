"""`har-stream run` wired up: the model, the metrics endpoint, the topics, the Kafka clients and
the `Service` loop, in the order that makes every bad setting fail before the cluster is
touched (model, TLS files, metrics port), then every missing topic created before consuming.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from har_stream.core import codec
from har_stream.kafka import poison
from har_stream.kafka.ports import KafkaFailure
from har_stream.service import metrics
from har_stream.service.changelog import ChangelogReader
from har_stream.service.guards import APP_REASONS
from har_stream.service.loop import Service
from har_stream.service.settings import Settings, SettingsError

log = logging.getLogger(__name__)




def load_service_model(spec: str) -> Any:
    """The model to serve: '' = the shipped one, a directory, or 'module:function';
    SettingsError naming HAR_MODEL when there is none (`model.setting`)."""
    from har_stream.service.model_setting import load_model_setting

    return load_model_setting(spec)


def start_metrics(settings: Settings) -> Any:
    """The metrics endpoint, bound before the cluster is touched: a taken port is a bad
    setting (SettingsError), found before any topic is created. None without an address."""
    if not settings.metrics_address:
        return None
    try:
        server = metrics.start_metrics_server(settings.metrics_host, settings.metrics_port)
    except OSError as exc:
        raise SettingsError(
            f"HAR_METRICS_ADDRESS={settings.metrics_address}: cannot listen there "
            f"({exc.strerror or exc}); choose a free port, 0 for any, or empty for no "
            "endpoint") from exc
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.server_port)
    return server


def run(settings: Settings, stop: threading.Event, model: Any = None) -> None:
    """Load the model, bind the metrics endpoint, connect, create missing topics, serve until
    `stop` is set, then shut down cleanly.

    Raises SettingsError before touching the cluster when the model or the metrics address is
    unusable, BrokerUnavailable / TopicError before consuming anything when the cluster is
    not, and ServiceError when output cannot be acknowledged (nothing is committed then).
    """
    from har_stream.kafka.clients import (
        close_quietly,
        make_admin,
        make_consumer,
        make_producer,
        prepare_service_topics,
    )

    model = model if model is not None else load_service_model(settings.model)
    metrics.set_build_info()
    metrics.set_model_info(version=model.version, engine=type(model).__name__)
    topics = settings.topics
    metrics.declare_label_values(
        activities=model.classes,
        reasons=codec.REASONS + APP_REASONS + poison.DEAD_LETTER_REASONS,
        topics=[name for name in topics.names() if name != topics.sensor_topic])
    for reason in poison.SKIP_REASONS:
        metrics.RECORDS_SKIPPED.labels(reason=reason)
    settings.kafka.check_files()
    server = start_metrics(settings)
    producer = snapshot_producer = consumer = reader_consumer = None
    try:
        admin = make_admin(settings.kafka)
        try:
            partitions = prepare_service_topics(admin, topics)
        finally:
            close_quietly(admin)
        log.info("topics ready: %s has %d partitions", topics.sensor_topic, partitions)
        compression = None if settings.compression_type == "none" else settings.compression_type
        producer = make_producer(settings.kafka, linger_ms=settings.linger_ms,
                                 compression_type=compression, unbounded_delivery=True)
        snapshot_producer = make_producer(settings.kafka, linger_ms=settings.linger_ms,
                                          compression_type=compression, unbounded_delivery=True)
        outputs = [name for name in topics.names()
                   if name not in (topics.sensor_topic, topics.changelog_topic)]
        for client, topic in [*((producer, name) for name in outputs),
                              (snapshot_producer, topics.changelog_topic)]:
            # metadata now, while the cluster answers: a first send to a topic during an
            # outage would otherwise block for max_block_ms, then fail the step
            client.partitions_for(topic)
        reader_consumer = make_consumer(settings.kafka, None, fetch_max_wait_ms=50,
                                        max_poll_records=10000,
                                        max_partition_fetch_bytes=8 * 1024 * 1024)
        consumer = make_consumer(
            settings.kafka, settings.group_id, max_poll_records=settings.max_poll_records,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms)
        metrics.BROKER_UP.set(1)
        reader = ChangelogReader(reader_consumer, topics.changelog_topic,
                                 timeout_s=settings.restore_timeout_s)
        service = Service(settings, model, consumer, producer, reader,
                          snapshot_producer=snapshot_producer)
        consumer.subscribe([topics.sensor_topic], listener=service.events)
        log.info("consuming %s as group %s (model %s)", topics.sensor_topic, settings.group_id,
                 model.version)
        service.run(stop)
        log.info("stopped cleanly after the final checkpoint")
    finally:
        close_quietly(consumer, reader_consumer)
        for outgoing in (producer, snapshot_producer):
            if outgoing is not None:
                try:
                    outgoing.close(timeout_s=5)
                except KafkaFailure as exc:
                    log.warning("closing a producer: %s", exc)
        if server is not None:
            server.shutdown()
