from __future__ import annotations

from pathlib import Path

import pytest

from notifsvc import channels, config
from notifsvc.channels.email import EmailSettings
from notifsvc.channels.log import LogSettings
from notifsvc.channels.webhook import WebhookSettings
from notifsvc.config import ConfigError, Secret


def test_defaults_when_nothing_is_set() -> None:
    settings = config.load({})
    assert settings.http_host == "127.0.0.1"
    assert settings.http_port == 8090
    assert settings.kafka_bootstrap is None


def test_values_are_parsed_into_types() -> None:
    settings = config.load(
        {
            "NOTIFSVC_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
            "NOTIFSVC_DATABASE_URL": "postgresql://u:pw@db:26257/notifsvc",
            "NOTIFSVC_HTTP_PORT": "9000",
            "NOTIFSVC_LOG_PATH": "/tmp/log.jsonl",
            "NOTIFSVC_WEBHOOK_ALLOWED_HOSTS": "Example.com, hooks.local ,",
            "NOTIFSVC_EMAIL_PORT": "2525",
        }
    )
    assert settings.bootstrap == "k1:9092,k2:9092"
    assert settings.dsn == "postgresql://u:pw@db:26257/notifsvc"
    assert settings.http_port == 9000
    assert settings.section(LogSettings).path == Path("/tmp/log.jsonl")
    webhook = settings.section(WebhookSettings)
    assert webhook.allowed_hosts == frozenset({"example.com", "hooks.local"})
    assert settings.section(EmailSettings).port == 2525
    assert settings.section(EmailSettings).tls == "starttls"  # a default of the section


def test_every_malformed_value_is_reported_by_name() -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(
            {
                "NOTIFSVC_HTTP_PORT": "eighty",
                "NOTIFSVC_KAFKA_BOOTSTRAP": "no-port-here",
                "NOTIFSVC_BATCH_SIZE": "0",
                "NOTIFSVC_EMAIL_TLS": "maybe",
                "NOTIFSVC_TRACING_ENDPOINT": "collector:4318",
                "NOTIFSVC_TRACING_SAMPLE_RATIO": "1.5",
            }
        )
    text = str(caught.value)
    for name in (
        "NOTIFSVC_HTTP_PORT",
        "NOTIFSVC_KAFKA_BOOTSTRAP",
        "NOTIFSVC_BATCH_SIZE",
        "NOTIFSVC_EMAIL_TLS",
        "NOTIFSVC_TRACING_ENDPOINT",
        "NOTIFSVC_TRACING_SAMPLE_RATIO",
    ):
        assert name in text
    assert len(caught.value.problems) == 6


def test_unknown_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="NOTIFSVC_HTTP_PROT is not a known setting"):
        config.load({"NOTIFSVC_HTTP_PROT": "1"})


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("NOTIFSVC_SMTP_HOST", "NOTIFSVC_EMAIL_HOST"),
        ("NOTIFSVC_TWILIO_AUTH_TOKEN_FILE", "NOTIFSVC_SMS_AUTH_TOKEN_FILE"),
        ("NOTIFSVC_LOG_CHANNEL_PATH", "NOTIFSVC_LOG_PATH"),
    ],
)
def test_a_renamed_variable_names_its_new_name(old: str, new: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load({old: "x"})
    assert caught.value.problems == [f"{old} was renamed {new}: rename the variable"]


def test_no_channel_variable_is_also_a_core_one() -> None:
    core = [name for name, _ in config.variables(config.Settings)]
    sections = [n for cls in channels.REGISTRY.values() for n, _ in config.variables(cls.Config)]
    assert len(set(core + sections)) == len(core) + len(sections)


def test_a_channel_secret_is_read_from_its_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("hunter2\n")
    settings = config.load({"NOTIFSVC_EMAIL_PASSWORD_FILE": str(tmp_path / "token")})
    assert settings.section(EmailSettings).password == Secret("hunter2")


def test_sections_equal_to_their_defaults_are_not_kept() -> None:
    assert config.Settings().with_sections(EmailSettings()) == config.Settings()
    assert config.load({}) == config.Settings()


def test_malformed_secret_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        config.load({"NOTIFSVC_DATABASE_URL": "mysql://root:hunter2@db"})
    assert "hunter2" not in str(caught.value)
    assert "NOTIFSVC_DATABASE_URL" in str(caught.value)


def test_require_names_missing_settings() -> None:
    with pytest.raises(ConfigError, match="NOTIFSVC_DATABASE_URL is required"):
        config.load({}).require("database_url")


def test_secrets_never_show_in_repr_or_redacted_view() -> None:
    settings = config.load(
        {
            "NOTIFSVC_DATABASE_URL": "postgresql://u:hunter2@db/x",
            "NOTIFSVC_SLACK_TOKEN": "xoxb-secret",
            "NOTIFSVC_API_KEYS": "k1,k2",
        }
    )
    shown = repr(settings) + str(settings.redacted())
    assert "hunter2" not in shown and "xoxb-secret" not in shown and "k1" not in shown
    assert settings.redacted()["NOTIFSVC_SLACK_TOKEN"] == "**********"
    assert settings.api_keys == (Secret("k1"), Secret("k2"))


def test_known_variables_cover_every_field() -> None:
    names = config.known_variables()
    assert "NOTIFSVC_KAFKA_BOOTSTRAP" in names and "NOTIFSVC_WEBHOOK_ALLOWED_HOSTS" in names


def test_topic_prefix_applies_to_names() -> None:
    assert config.load({"NOTIFSVC_TOPIC_PREFIX": "staging."}).topic("x") == "staging.x"


def test_to_env_is_the_inverse_of_load() -> None:
    env = {
        "NOTIFSVC_KAFKA_BOOTSTRAP": "k1:9092",
        "NOTIFSVC_DATABASE_URL": "postgresql://u:pw@db/x",
        "NOTIFSVC_HTTP_PORT": "9000",
        "NOTIFSVC_WEBHOOK_ALLOWED_HOSTS": "a.example,b.example",
        "NOTIFSVC_API_KEYS": "k1,k2",
        "NOTIFSVC_SEND_RATE": "2.5",
        "NOTIFSVC_LOG_PATH": "/tmp/x.jsonl",
        "NOTIFSVC_EMAIL_PASSWORD": "hunter2",
        "NOTIFSVC_TRACING_ENDPOINT": "http://otel-collector:4318",
        "NOTIFSVC_TRACING_SAMPLE_RATIO": "0.25",
    }
    settings = config.load(env)
    assert config.to_env(settings) == env
    assert config.load(config.to_env(settings)) == settings


@pytest.mark.parametrize("name", ["NOTIFSVC_SEND_RATE", "NOTIFSVC_RATE_LIMIT_PER_KEY"])
@pytest.mark.parametrize("raw", ["0.5", "0.001", "2.5", "0"])
def test_fractional_rates_are_accepted(name: str, raw: str) -> None:
    settings = config.load({name: raw})
    assert getattr(settings, name.removeprefix("NOTIFSVC_").lower()) == float(raw)


@pytest.mark.parametrize("name", ["NOTIFSVC_SEND_RATE", "NOTIFSVC_RATE_LIMIT_PER_KEY"])
@pytest.mark.parametrize("raw", ["-1", "inf", "nan", "0.0001", "1e-300", "fast"])
def test_unusable_rates_are_refused_by_name(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load({name: raw})
    [problem] = caught.value.problems
    assert problem.startswith(f"{name}={raw!r}: ")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("not json", "expected a JSON object"),
        ("[1, 2]", "expected a JSON object of API key ids"),
        ('{"k1": {}}', "is not an API key id"),
        ('{"0123456789abcdef": {"url": "ftp://x"}}', "url must be an http(s) URL"),
        ('{"0123456789abcdef": {"hook": "https://x"}}', "expected"),
        ('{"0123456789abcdef": {"secrets": "hunter2"}}', "secrets:"),
    ],
)
def test_malformed_callback_clients_are_refused_by_name_without_echoing(
    raw: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load({"NOTIFSVC_CALLBACK_CLIENTS": raw})
    [message] = caught.value.problems
    assert message.startswith("NOTIFSVC_CALLBACK_CLIENTS=(hidden): ")
    assert problem in message and "hunter2" not in message


def test_callback_clients_give_each_key_its_url_and_secrets() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    raw = f'{{"0123456789abcdef": {{"url": "https://cb.example/x", "secrets": "{secret}"}}}}'
    clients = config.load({"NOTIFSVC_CALLBACK_CLIENTS": raw}).callback_clients
    assert clients is not None
    assert clients.url("0123456789abcdef") == "https://cb.example/x"
    assert clients.secrets("0123456789abcdef") is not None
    assert clients.url("fedcba9876543210") is None and clients.secrets(None) is None
