"""Kafka and database connection settings: validation, secrets from files, and the
librdkafka properties they become (SASL cannot be served by the embedded broker, so its
mapping is checked here; TLS runs for real in integration/test_tls.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifsvc import kafka
from notifsvc.config import ConfigError, Secret, load
from notifsvc.db import connect

BOOT = {"NOTIFSVC_KAFKA_BOOTSTRAP": "kafka:9093"}


def test_plaintext_is_the_default_and_sets_no_credentials() -> None:
    props = kafka.security(load(BOOT).kafka)
    assert props == {"security.protocol": "plaintext"}


def test_strimzi_mtls_listener(tmp_path: Path) -> None:
    for name in ("ca.crt", "user.crt", "user.key"):
        (tmp_path / name).write_text("x")
    settings = load(
        BOOT
        | {
            "NOTIFSVC_KAFKA_SECURITY_PROTOCOL": "ssl",
            "NOTIFSVC_KAFKA_SSL_CA_FILE": str(tmp_path / "ca.crt"),
            "NOTIFSVC_KAFKA_SSL_CERT_FILE": str(tmp_path / "user.crt"),
            "NOTIFSVC_KAFKA_SSL_KEY_FILE": str(tmp_path / "user.key"),
        }
    )
    assert kafka.security(settings.kafka) == {
        "security.protocol": "ssl",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(tmp_path / "ca.crt"),
        "ssl.certificate.location": str(tmp_path / "user.crt"),
        "ssl.key.location": str(tmp_path / "user.key"),
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "scram-sha-512"])
def test_sasl_with_a_password_from_a_file(tmp_path: Path, mechanism: str) -> None:
    (tmp_path / "password").write_text("s3cret\n")
    settings = load(
        BOOT
        | {
            "NOTIFSVC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "NOTIFSVC_KAFKA_SASL_MECHANISM": mechanism,
            "NOTIFSVC_KAFKA_SASL_USERNAME": "notifsvc",
            "NOTIFSVC_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password"),
        }
    )
    props = kafka.security(settings.kafka)
    assert props["sasl.mechanism"] == mechanism.upper()
    assert props["sasl.username"] == "notifsvc" and props["sasl.password"] == "s3cret"
    assert props["security.protocol"] == "sasl_ssl"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.redacted())


def test_oauthbearer_uses_the_oidc_client_credentials_flow() -> None:
    settings = load(
        BOOT
        | {
            "NOTIFSVC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "NOTIFSVC_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
            "NOTIFSVC_KAFKA_OAUTH_TOKEN_URL": "https://idp.example.com/token",
            "NOTIFSVC_KAFKA_OAUTH_CLIENT_ID": "notifsvc",
            "NOTIFSVC_KAFKA_OAUTH_CLIENT_SECRET": "abc",
            "NOTIFSVC_KAFKA_OAUTH_SCOPE": "kafka",
        }
    )
    props = kafka.security(settings.kafka)
    assert props["sasl.oauthbearer.method"] == "oidc"
    assert props["sasl.oauthbearer.token.endpoint.url"] == "https://idp.example.com/token"
    assert props["sasl.oauthbearer.client.secret"] == "abc"
    assert props["sasl.oauthbearer.scope"] == "kafka"


def test_any_other_librdkafka_property_passes_through() -> None:
    extra = "client.rack=eu-1a, ssl.endpoint.identification.algorithm=none"
    settings = load(BOOT | {"NOTIFSVC_KAFKA_EXTRA": extra})
    props = kafka.security(settings.kafka)
    assert props["client.rack"] == "eu-1a"
    assert props["ssl.endpoint.identification.algorithm"] == "none"


def test_extra_properties_from_a_file_may_hold_commas(tmp_path: Path) -> None:
    (tmp_path / "extra").write_text("# tuning\nssl.cipher.suites=A,B\nlinger.ms=3\n")
    settings = load(BOOT | {"NOTIFSVC_KAFKA_EXTRA_FILE": str(tmp_path / "extra")})
    props = kafka.security(settings.kafka)
    assert props["ssl.cipher.suites"] == "A,B" and props["linger.ms"] == "3"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"NOTIFSVC_KAFKA_SECURITY_PROTOCOL": "TLS"}, "expected one of"),
        ({"NOTIFSVC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SASL_MECHANISM is required"),
        ({"NOTIFSVC_KAFKA_SASL_MECHANISM": "PLAIN"}, "needs a SASL_\\* security protocol"),
        (
            {
                "NOTIFSVC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "NOTIFSVC_KAFKA_SASL_MECHANISM": "PLAIN",
            },
            "SASL_USERNAME is required",
        ),
        ({"NOTIFSVC_KAFKA_SSL_CA_FILE": "/nonexistent/ca.crt"}, "cannot read the file"),
        ({"NOTIFSVC_KAFKA_SSL_CERT_FILE": __file__}, "go together: set both"),
        ({"NOTIFSVC_DATABASE_SSL_KEY_FILE": __file__}, "go together: set both"),
        ({"NOTIFSVC_KAFKA_EXTRA": "no-equals-sign"}, "expected key=value"),
        ({"NOTIFSVC_DATABASE_SSLMODE": "prefer"}, "expected one of"),
        ({"NOTIFSVC_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"}, "cannot read the file"),
    ],
)
def test_settings_that_cannot_work_are_refused_by_name(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load(BOOT | env)


def test_a_secret_set_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("a")
    env = {"NOTIFSVC_SLACK_TOKEN": "b", "NOTIFSVC_SLACK_TOKEN_FILE": str(tmp_path / "pw")}
    with pytest.raises(ConfigError, match="both set"):
        load(BOOT | env)


def test_the_database_url_and_password_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "url").write_text("postgresql://root@crdb:26257/notifsvc\n")
    (tmp_path / "pw").write_text("pgpass\n")
    settings = load(
        {
            "NOTIFSVC_DATABASE_URL_FILE": str(tmp_path / "url"),
            "NOTIFSVC_DATABASE_PASSWORD_FILE": str(tmp_path / "pw"),
            "NOTIFSVC_DATABASE_SSLMODE": "disable",
        }
    )
    db = settings.database
    assert db.dsn == "postgresql://root@crdb:26257/notifsvc"
    assert connect.options(db) == {"password": "pgpass", "ssl": False}
    assert db.password == Secret("pgpass")


def test_database_verify_full_checks_the_hostname_and_the_ca() -> None:
    from notifsvc.config import DatabaseConnection  # noqa: PLC0415

    context = connect.ssl_context(DatabaseConnection("postgresql://x", sslmode="verify-full"))
    assert context is not None and context.check_hostname
    loose = connect.ssl_context(DatabaseConnection("postgresql://x", sslmode="require"))
    assert loose is not None and not loose.check_hostname
    assert connect.ssl_context(DatabaseConnection("postgresql://x")) is None
