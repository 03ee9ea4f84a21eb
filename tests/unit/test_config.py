"""Settings: flags over HAR_* variables over defaults, validation, secrets kept out of sight."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

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
            nested = config._nested(f)
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
    ({"HAR_SECURITY_PROTOCOL": "SASL_SSL"}, "needs sasl_mechanism"),
    ({"HAR_SECURITY_PROTOCOL": "SASL_SSL", "HAR_SASL_MECHANISM": "PLAIN"}, "sasl_username"),
    ({"HAR_SASL_MECHANISM": "PLAIN"}, "use SASL_PLAINTEXT or SASL_SSL"),
    ({"HAR_SSL_CERTFILE": "/c.pem"}, "go together"),
    ({"HAR_METRICS_ADDRESS": "9108"}, "not host:port"),
    ({"HAR_SENSOR_TOPIC": "har.activity"}, "topic names must differ"),
    ({"HAR_MAX_POLL_RECORDS": "0"}, "at least 1"),
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
    from har_stream.kafka.clients import client_config

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
