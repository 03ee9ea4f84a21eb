"""`har-stream run`: the recognizer service, configured by flags and HAR_* variables.

This module is the only place (with the other subcommands) that reads the environment,
installs signal handlers and maps failures to exit codes:
0 clean stop (SIGTERM/SIGINT), 1 output not acknowledged, 2 bad settings,
3 Kafka unreachable or topics unusable.

Bad settings are all found before the cluster is touched: the values and their relations
when the settings are built, the TLS files and the model (`model.setting`) right after, then
(in `run`) the metrics port. Each is one
line on stderr, `har-stream run: HAR_VARIABLE=value: the rule`, and exit code 2.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from har_stream.core.logsafe import RepeatFilter, SecretFilter
from har_stream.service.settings import (
    Settings,
    SettingsError,
    add_options,
    secret_values,
    settings_from,
)

EXIT_OK, EXIT_FAILED, EXIT_SETTINGS, EXIT_KAFKA = 0, 1, 2, 3
GC_THRESHOLDS = (100_000, 50, 50)
"""The loop makes many short-lived objects (records, futures) and few cycles: collecting
every 100,000 allocations instead of 700 gave +3-4 % throughput (docs/PERFORMANCE.md §3)."""
log = logging.getLogger("har_stream")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run", help="run the recognizer service (Kafka in, activities and counts out)",
        description="Consume sensor batches, recognise activities, publish results and "
        "per-activity counts, keep per-device state in a changelog topic. Stops cleanly on "
        "SIGTERM/SIGINT. Flags override HAR_* environment variables, which override defaults.",
    )
    add_options(parser, Settings)
    parser.set_defaults(func=main)


def configure_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """Log to stderr at `level` (the Kafka client at WARNING at most); `secrets` never shown."""
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter("kafka"))  # it repeats itself while a broker is down
        handler.addFilter(SecretFilter(secrets))


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT; the previous handlers come back afterwards."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("%s received: finishing the batch, checkpointing, leaving the group",
                 signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args, os.environ)
        settings.kafka.check_files()
        from har_stream.service.model_setting import check_model_setting

        check_model_setting(settings.model)  # cheap, before the Kafka modules are imported
    except ValueError as exc:
        print(f"har-stream run: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    configure_logging(settings.log_level, secret_values(settings))
    log.info("settings: %r", settings)
    from har_stream.kafka.clients import BrokerUnavailable, TopicError
    from har_stream.kafka.ports import KafkaFailure
    from har_stream.service.changelog import RestoreError
    from har_stream.service.loop import ServiceError
    from har_stream.service.runner import run

    gc.freeze()  # what is loaded so far lives as long as the process: never scan it again
    gc.set_threshold(*GC_THRESHOLDS)
    with stop_on_signals() as stop:
        try:
            run(settings, stop)
        except SettingsError as exc:  # the model or the metrics address, found at start
            print(f"har-stream run: {exc}", file=sys.stderr)
            return EXIT_SETTINGS
        except (BrokerUnavailable, TopicError) as exc:
            log.error("%s", exc)
            return EXIT_KAFKA
        except (ServiceError, RestoreError, KafkaFailure) as exc:
            log.error("stopping without committing further: %s", exc)
            return EXIT_FAILED
    return EXIT_OK
