"""TLS, SASL and secrets against real Kafka-protocol endpoints on 127.0.0.1.

The embedded broker speaks plaintext only, so TLS ends in a front door made by the test
(`reliability_support.TlsFrontDoor`, mutual TLS with certificates generated here) and the
broker advertises the front door's address: every connection the service makes, bootstrap
and after, is TLS. SASL is checked against the broker with `--authentication`: the service's
mechanism reaches the broker's SASL handshake. Secrets (SASL password, client key password)
must not appear in `--help`, the logs at DEBUG, error messages or the metrics.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from network_support import AdvertisingBroker, TlsFrontDoor, make_certificates
from service_support import (
    REPO,
    TESTS,
    FakeModel,
    InProcessService,
    TopicReader,
    batches_of,
    check_results,
    create_topics,
    interleave,
    offline_results,
    send_batches,
    synthetic_samples,
    topic_settings,
    unique,
    window_ids,
)

from har_stream.core.logsafe import SecretFilter
from har_stream.kafka.clients import BrokerUnavailable, make_admin
from har_stream.service.settings import KafkaSettings, Settings, secret_values
from har_stream.tools.broker import free_port

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000
SASL_SECRET = "sasl-Secret-7f3a9"


def run_cli(*args: str, env: dict[str, str], timeout: float = 60
            ) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HAR_")}
    environment.update(env, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]))
    return subprocess.run([sys.executable, "-m", "har_stream.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=environment)


@pytest.fixture
def tls(tmp_path: Path):  # type: ignore[no-untyped-def]
    certs = make_certificates(tmp_path)
    port = free_port()
    broker = AdvertisingBroker(advertised_port=port)
    door = TlsFrontDoor(broker.port, certs, port)
    try:
        yield certs, door
    finally:
        door.close()
        broker.stop()


def test_the_service_runs_over_mutual_tls_and_keeps_the_key_password_secret(
        tls, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    certs, door = tls
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{door.port}", security_protocol="SSL",
                          ssl_cafile=certs.ca, ssl_certfile=certs.client_cert,
                          ssl_keyfile=certs.client_key, ssl_password=certs.client_key_password,
                          connect_timeout_s=10)
    settings = Settings(kafka=kafka, topics=topic_settings(), group_id=unique("group"),
                        session_timeout_ms=6000, heartbeat_interval_ms=1000, poll_timeout_ms=100,
                        commit_interval_s=0.2, metrics_address="127.0.0.1:0")
    create_topics(settings)
    streams = {f"tls-{i}": synthetic_samples(1000, seed=40 + i) for i in range(2)}
    expected = offline_results(FakeModel(), streams, T0_MS)
    send_batches(kafka, settings.topics.sensor_topic,
                 interleave({d: batches_of(d, s, 50, T0_MS) for d, s in streams.items()}))
    results = TopicReader(kafka, settings.topics.activity_topic)
    caplog.handler.addFilter(SecretFilter(secret_values(settings)))  # as `har-stream run` does
    with caplog.at_level(logging.DEBUG), InProcessService(settings, FakeModel()) as service:
        results.until(lambda r: window_ids(r) >= set(expected.results), 60, "results over TLS",
                      service.check)
        port = next(int(r.getMessage().rsplit(":", 1)[1].split("/")[0]) for r in caplog.records
                    if r.getMessage().startswith("metrics on http://"))
        exposition = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=5).read().decode()
    check_results(results.poll(), expected)
    results.close()
    assert door.handshakes >= 3 and door.refused == 0, "every connection went through TLS"
    logged = caplog.text  # kafka-python's DEBUG lines too: its admin client logs its config
    assert "'ssl_password': '***'" in logged
    assert "ssl_password='***'" in repr(settings)
    for text in (logged, exposition, repr(settings)):
        assert certs.client_key_password not in text


def test_a_certificate_from_an_unknown_ca_is_refused_within_the_timeout(
        tls, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, door = tls
    (tmp_path / "stranger").mkdir()
    stranger = make_certificates(tmp_path / "stranger")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"\(SSL\)"):
        make_admin(KafkaSettings(bootstrap_servers=f"127.0.0.1:{door.port}",
                                 security_protocol="SSL", ssl_cafile=stranger.ca,
                                 connect_timeout_s=2))
    assert time.monotonic() - started < 2 + 5
    assert door.handshakes == 0


def test_tls_against_a_plaintext_listener_exits_3_instead_of_hanging(broker: object) -> None:
    """kafka-python awaits a TLS handshake without a deadline; the service gives up anyway."""
    result = run_cli("run", "--model", "service_support:fake_model", "--metrics-address", "",
                     env={"HAR_BOOTSTRAP_SERVERS": broker.bootstrap_servers,  # type: ignore[attr-defined]
                          "HAR_SECURITY_PROTOCOL": "SSL", "HAR_CONNECT_TIMEOUT_S": "2"},
                     timeout=40)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "handshake never completes" in result.stderr
    assert "HAR_SECURITY_PROTOCOL" in result.stderr


def test_sasl_settings_reach_the_broker_and_the_password_is_never_printed() -> None:
    authenticating = AdvertisingBroker(extra=["--authentication"])
    try:
        address = f"127.0.0.1:{authenticating.port}"
        env = {"HAR_BOOTSTRAP_SERVERS": address, "HAR_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
               "HAR_SASL_MECHANISM": "PLAIN", "HAR_SASL_USERNAME": "har-svc",
               "HAR_SASL_PASSWORD": SASL_SECRET, "HAR_SSL_PASSWORD": SASL_SECRET + "-key",
               "HAR_CONNECT_TIMEOUT_S": "2", "HAR_LOG_LEVEL": "DEBUG",
               "HAR_METRICS_ADDRESS": ""}
        result = run_cli("run", "--model", "service_support:fake_model", env=env, timeout=40)
        assert result.returncode == 3, result.stderr[-2000:]
        assert f"cannot reach Kafka at {address} (SASL_PLAINTEXT)" in result.stderr
        assert "sasl_mechanism='PLAIN'" in result.stderr and "sasl_password='***'" in result.stderr
        wait = time.monotonic() + 5
        while "NoSharedMechanism" not in authenticating.text() and time.monotonic() < wait:
            time.sleep(0.1)
        assert "NoSharedMechanism" in authenticating.text(), "no SASL handshake reached it"
        shown = run_cli("run", "--help", env=env)
        for output in (result.stdout, result.stderr, shown.stdout, shown.stderr):
            assert SASL_SECRET not in output
    finally:
        authenticating.stop()
