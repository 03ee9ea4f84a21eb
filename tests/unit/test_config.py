"""Settings: flags over HAR_* variables over defaults, validation, secrets kept out of sight."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from har_stream.core.option_rules import SettingsError
from har_stream.service import settings as config
from har_stream.service.settings import KafkaSettings, Settings, TopicSettings, settings_from


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_options(parser, Settings)
    return parser.parse_args(list(argv))


def test_defaults_without_flags_or_environment() -> None:
    settings = settings_from(parse(), {})
    assert settings == Settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.topics.changelog_topic == "har.state-changelog"
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9108)


def test_flags_override_environment_which_overrides_defaults() -> None:
    env = {"HAR_BOOTSTRAP_SERVERS": "kafka:9092", "HAR_GROUP_ID": "from-env",
           "HAR_MAX_POLL_RECORDS": "123", "HAR_CREATE_TOPICS": "false"}
    settings = settings_from(parse("--group-id", "from-flag"), env)
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.group_id == "from-flag"
    assert settings.max_poll_records == 123
    assert settings.topics.create_topics is False
    assert settings_from(parse("--create-topics"), env).topics.create_topics is True


def test_every_field_has_a_flag_and_a_variable() -> None:
    def leaves(cls: type) -> list[str]:
        out = []
        for f in dataclasses.fields(cls):
            nested = config.nested_settings(f)
            out.extend(leaves(nested) if nested else [f.name])
        return out

    names = leaves(Settings)
    assert len(names) == len(set(names)), "flag names must be unique across nested settings"
    env = {config.env_name(n): "" for n in names}
    help_text = argparse.ArgumentParser()
    config.add_options(help_text, Settings)
    text = help_text.format_help()
    for name in names:
        assert config.flag_name(name) in text and config.env_name(name) in text
    assert settings_from(parse(), env) == Settings(), "empty variables count as unset"


@pytest.mark.parametrize(("env", "message"), [
    ({"HAR_MAX_POLL_RECORDS": "many"}, "HAR_MAX_POLL_RECORDS='many' is not a valid int"),
    ({"HAR_CREATE_TOPICS": "maybe"}, "not a boolean"),
    ({"HAR_SECURITY_PROTOCOL": "TLS"}, "choose one of"),
    ({"HAR_SECURITY_PROTOCOL": "SASL_SSL"}, "needs HAR_SASL_MECHANISM"),
    ({"HAR_SECURITY_PROTOCOL": "SASL_SSL", "HAR_SASL_MECHANISM": "PLAIN"},
     "HAR_SASL_USERNAME"),
    ({"HAR_SASL_MECHANISM": "PLAIN"}, "use SASL_PLAINTEXT or SASL_SSL"),
    ({"HAR_SSL_CERTFILE": "/c.pem"}, "go together"),
    ({"HAR_METRICS_ADDRESS": "9108"}, "not host:port"),
    ({"HAR_SENSOR_TOPIC": "har.activity"}, "topic names must differ"),
    ({"HAR_MAX_POLL_RECORDS": "0"}, "an integer from 1 to 1,000,000"),
])
def test_invalid_settings_are_refused_with_the_reason(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings_from(parse(), env)


def test_secrets_never_appear_in_repr_or_help() -> None:
    env = {"HAR_SECURITY_PROTOCOL": "SASL_SSL", "HAR_SASL_MECHANISM": "SCRAM-SHA-512",
           "HAR_SASL_USERNAME": "svc", "HAR_SASL_PASSWORD": "hunter2-secret",
           "HAR_SSL_PASSWORD": "key-secret"}
    settings = settings_from(parse(), env)
    assert settings.kafka.sasl_password == "hunter2-secret"
    shown = repr(settings)
    assert "hunter2-secret" not in shown and "key-secret" not in shown
    assert "sasl_password='***'" in shown and "sasl_username='svc'" in shown
    assert "ssl_cafile=None" in shown  # unset values are shown as such
    parser = argparse.ArgumentParser()
    config.add_options(parser, Settings)
    assert "HAR_SASL_PASSWORD]" in parser.format_help()  # named, without a default shown


def test_kafka_security_settings_reach_the_client_configuration() -> None:
    from har_stream.kafka.connect import client_config

    kafka = KafkaSettings(bootstrap_servers="a:9093, b:9093", security_protocol="SASL_SSL",
                          sasl_mechanism="SCRAM-SHA-256", sasl_username="u",
                          sasl_password="p", ssl_cafile="/ca.pem", connect_timeout_s=2.5)
    cfg = client_config(kafka)
    assert cfg["bootstrap_servers"] == ["a:9093", "b:9093"]
    assert (cfg["security_protocol"], cfg["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-256")
    assert (cfg["sasl_plain_username"], cfg["sasl_plain_password"]) == ("u", "p")
    assert cfg["ssl_cafile"] == "/ca.pem" and cfg["bootstrap_timeout_ms"] == 2500
    assert "sasl_mechanism" not in client_config(KafkaSettings())


def test_overrides_change_defaults_for_one_command() -> None:
    topics = config.options_from(TopicSettings, None, {}, {"partitions": 2})
    assert topics.partitions == 2
    assert config.options_from(TopicSettings, None, {"HAR_PARTITIONS": "3"},
                               {"partitions": 2}).partitions == 3


@pytest.mark.parametrize(("env", "message"), [
    ({"HAR_BOOTSTRAP_SERVERS": "::::"}, "HAR_BOOTSTRAP_SERVERS='::::': must be host:port[,"),
    ({"HAR_BOOTSTRAP_SERVERS": "kafka:99999"}, "ports 1..65535"),
    ({"HAR_BOOTSTRAP_SERVERS": "PLAINTEXT://kafka:9092"}, "is not host:port"),
    ({"HAR_BOOTSTRAP_SERVERS": "kafka"}, "'kafka' is not host:port"),
    ({"HAR_HEARTBEAT_INTERVAL_MS": "-1"}, "HAR_HEARTBEAT_INTERVAL_MS=-1: must be an integer at "
                                          "least 1"),
    ({"HAR_HEARTBEAT_INTERVAL_MS": "5000"}, "at most a third of HAR_SESSION_TIMEOUT_MS=10000"),
    ({"HAR_SESSION_TIMEOUT_MS": "1"}, "HAR_SESSION_TIMEOUT_MS=1: must be an integer from 1,000 "
                                      "to 1,800,000"),
    ({"HAR_COMMIT_INTERVAL_S": "inf"}, "HAR_COMMIT_INTERVAL_S=inf: must be a finite number from "
                                       "0 to 3,600"),
    ({"HAR_IDLE_TTL_S": "nan"}, "HAR_IDLE_TTL_S=nan: must be 0 (never) or a finite number above "
                                "0"),
    ({"HAR_IDLE_TTL_S": "-5"}, "HAR_IDLE_TTL_S=-5.0"),
    ({"HAR_CONNECT_TIMEOUT_S": "0"}, "HAR_CONNECT_TIMEOUT_S=0.0: must be a finite number above 0"),
    ({"HAR_MAX_RATE_FACTOR": "0.5"}, "must be 0 (off) or a finite number at least 1"),
    ({"HAR_PARTITIONS": "0"}, "HAR_PARTITIONS=0: must be an integer from 1 to 10,000"),
    ({"HAR_SENSOR_TOPIC": "sensor data"}, "HAR_SENSOR_TOPIC='sensor data': must be 1 to 249 of"),
    ({"HAR_METRICS_ADDRESS": "127.0.0.1:70000"}, "HAR_METRICS_ADDRESS='127.0.0.1:70000'"),
    ({"HAR_MAX_POLL_INTERVAL_MS": "2000000000"}, "from 1,000 to 86,400,000"),
])
def test_every_rule_names_the_variable_the_value_and_the_rule(env: dict[str, str],
                                                              message: str) -> None:
    with pytest.raises(config.SettingsError) as raised:
        settings_from(parse(), env)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_flags_are_checked_like_variables() -> None:
    with pytest.raises(config.SettingsError, match="HAR_COMMIT_INTERVAL_S=inf"):
        settings_from(parse("--commit-interval-s", "inf"), {})
    with pytest.raises(config.SettingsError, match="HAR_GROUP_ID='': must be not empty"):
        settings_from(parse("--group-id", ""), {})


@pytest.mark.parametrize("env", [
    {"HAR_IDLE_TTL_S": "0", "HAR_MAX_DEVICES": "0", "HAR_MAX_RATE_FACTOR": "0",
     "HAR_COMMIT_INTERVAL_S": "0", "HAR_METRICS_ADDRESS": "0.0.0.0:0"},
    {"HAR_BOOTSTRAP_SERVERS": "[::1]:9092, kafka-2.example:9093,", "HAR_SESSION_TIMEOUT_MS": "6000",
     "HAR_HEARTBEAT_INTERVAL_MS": "2000", "HAR_MAX_POLL_INTERVAL_MS": "300000"},
])
def test_the_documented_special_and_boundary_values_are_accepted(env: dict[str, str]) -> None:
    settings_from(parse(), env)


def test_every_number_option_declares_its_valid_range() -> None:
    """A new numeric setting without bounds would accept nonsense silently again."""
    def fields(cls: type) -> list[dataclasses.Field]:
        out = []
        for f in dataclasses.fields(cls):
            nested = config.nested_settings(f)
            out.extend(fields(nested) if nested else [f])
        return out

    for f in fields(Settings):
        if f.metadata.get("kind") in (int, float):
            assert {"at_least", "above"} & {k for k, v in f.metadata.items() if v is not None}, \
                f"{f.name} has no lower bound"


def test_the_service_doc_lists_every_setting_with_its_valid_values() -> None:
    """docs/SERVICE.md's table is the one the declarations generate: no setting missing, no
    rule out of date (regenerate with `python -m har_stream.service.settings_rules`)."""
    from pathlib import Path

    from har_stream.service.settings_rules import service_table

    doc = (Path(__file__).resolve().parents[2] / "docs" / "SERVICE.md").read_text()
    block = doc.split("<!-- settings-table:")[1].split("\n", 1)[1]
    rows = [line for line in block.splitlines() if line.startswith("| `HAR_")]
    assert "\n".join(rows) == service_table(), (
        "regenerate: python -m har_stream.service.settings_rules")
    variables = {config.env_name(f.name) for cls in (KafkaSettings, TopicSettings, Settings)
                 for f in dataclasses.fields(cls) if "kind" in f.metadata}
    assert {row.split("`")[1] for row in rows} == variables


def test_an_ipv6_metrics_address_is_split_without_its_brackets() -> None:
    assert config.metrics_host_port("[::1]:9108") == ("::1", 9108)
    assert settings_from(parse(), {"HAR_METRICS_ADDRESS": "[::]:0"}).metrics_host == "::"


def test_the_topic_prefix_goes_in_front_of_every_topic_and_the_group_once() -> None:
    plain = settings_from(parse(), {})
    settings = settings_from(parse(), {"HAR_TOPIC_PREFIX": "team-a."})
    assert settings.topics.names() == ["team-a." + name for name in plain.topics.names()]
    assert settings.group_id == "team-a.har-stream"
    again = dataclasses.replace(settings, max_devices=7)  # a copy is not prefixed twice
    assert (again.topics, again.group_id) == (settings.topics, settings.group_id)
    with pytest.raises(SettingsError, match="HAR_TOPIC_PREFIX"):
        settings_from(parse(), {"HAR_TOPIC_PREFIX": "no spaces"})
    with pytest.raises(SettingsError, match="HAR_SENSOR_TOPIC"):
        settings_from(parse(), {"HAR_TOPIC_PREFIX": "x" * 245})
