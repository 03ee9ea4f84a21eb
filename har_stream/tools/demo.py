"""`har-stream demo`: the whole product on one machine, watched live, ending with an accuracy.

Without `--bootstrap-servers` (or HAR_BOOTSTRAP_SERVERS) it starts the embedded broker; with
them, its topics and group get a unique prefix (`demo-<8 hex>.`, or HAR_TOPIC_PREFIX), so a
demo on a shared cluster stays apart from every deployment and every other demo.
Then it creates the topics, starts the recognizer (`har-stream run` in a child process, its
metrics on http://127.0.0.1:9108/metrics), replays the test subjects' recordings as devices
at `--speed` times real time, and shows per device the current activity, its confidence and
the true activity, with totals and throughput. It ends with the window accuracy against the
ground truth (windows inside one basic-activity segment, as in the offline evaluation).
Ctrl-C stops everything it started, in order, and still prints the accuracy so far.

The command line lives here (checks before anything starts), its settings in `demo_settings`;
the cluster it starts in `demo_cluster`, the scoring in `demo_score`, the live view in `demo_view`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from har_stream.core.options import add_options, options_from
from har_stream.tools.demo_cluster import recognizer_command, run_demo
from har_stream.tools.demo_settings import DemoSettings, unique_prefix

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# command line


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="embedded broker + recognizer + simulator, live view, final accuracy",
        description="Run the whole pipeline on this machine and watch it: without "
        "--bootstrap-servers an embedded broker is started. Flags override HAR_* environment "
        "variables, which override defaults.")
    add_options(parser, DemoSettings)
    parser.set_defaults(func=main)


def check_recognizer_settings(settings: DemoSettings) -> None:
    """Raise SettingsError if the recognizer the demo starts would refuse its settings: its
    flags (`recognizer_command`) over the HAR_* variables it inherits, and its model. So a
    bad one stops the demo before a broker is started."""
    from har_stream.service.model_setting import check_model_setting
    from har_stream.service.settings import Settings, settings_from

    parser = argparse.ArgumentParser()
    add_options(parser, Settings)
    flags = recognizer_command(settings, "127.0.0.1:0")[4:]  # after `python -m ... run`
    settings_from(parser.parse_args(flags), os.environ)
    settings.kafka.check_files()
    check_model_setting(settings.model)


def main(args: argparse.Namespace) -> int:
    embedded = args.bootstrap_servers is None and not os.environ.get("HAR_BOOTSTRAP_SERVERS")
    try:
        settings = options_from(DemoSettings, args, os.environ,
                                None if embedded else {"topic_prefix": unique_prefix()})
    except ValueError as exc:
        print(f"har-stream demo: {exc}", file=sys.stderr)
        return 2
    try:
        check_recognizer_settings(settings)
    except ValueError as exc:  # SettingsError: the variable and the rule
        print(f"har-stream demo: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from har_stream.tools.simulator import plan_streams, select_recordings
    from har_stream.training.hapt import DataError, default_data_path, load_hapt

    path = settings.data or default_data_path()
    try:
        data = load_hapt(path)
    except DataError as exc:
        print(f"har-stream demo: the HAPT recordings are needed ({exc}).\nPut hapt_raw.npz in "
              "./data or ../shared/data, or pass --data PATH; `har-stream data --help` shows "
              "how to download and convert the UCI archive.", file=sys.stderr)
        return 2
    streams = plan_streams(select_recordings(data, "test", ""), settings.devices)
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):  # stop as cleanly as on Ctrl-C
        signal.signal(stop_signal, signal.default_int_handler)
    try:
        return run_demo(settings, embedded, streams, data.activity_names)
    except KeyboardInterrupt:
        return 130
