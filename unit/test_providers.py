"""Failover between the providers of a channel: the rule, the breakers, the settings.

The providers here are small channels that answer from a list (the network ones are tested
against their fakes in ``integration/channels/test_failover.py``)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace

import pytest

from notifsvc import channels, config, metrics, providers
from notifsvc.attempts import AttemptOutcome
from notifsvc.breaker import State
from notifsvc.channels.base import (
    Channel,
    DeliveryError,
    NoSettings,
    PermanentError,
    Receipt,
    Throttled,
    TransientError,
)
from notifsvc.channels.email import EmailChannel, EmailSettings, SmtpBackupSettings
from notifsvc.channels.sms import SmsChannel, SmsSettings
from notifsvc.channels.vonage import VonageChannel, VonageSettings
from notifsvc.config import ConfigError, Secret, Settings
from notifsvc.delivery import Tried
from notifsvc.model import FieldError, Notification
from notifsvc.providers import Failover, failover_class, provider_names

TO = "+14155552671"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Hang(TransientError):
    """In a script: the provider takes the request and never answers."""


def refused(name: str) -> TransientError:
    error = TransientError(f"{name}: connection refused")
    error.failover = True
    return error


@dataclass
class Scripted:
    """What one test provider answers, in order (then: accepted)."""

    answers: list[DeliveryError]
    sent: list[uuid.UUID]


def provider(name: str, *answers: DeliveryError) -> Channel[NoSettings]:
    script = Scripted(list(answers), [])

    class Provider(Channel[NoSettings]):
        def validate_recipient(self, to: str) -> list[FieldError]:
            return [] if to.startswith("+") else [FieldError("to", f"{name} wants +")]

        async def send(self, notification: Notification) -> Receipt | None:
            if script.answers:
                answer = script.answers.pop(0)
                if isinstance(answer, Hang):
                    await asyncio.Event().wait()
                raise answer
            script.sent.append(notification.uuid)
            return Receipt(f"{name}-{len(script.sent)}", 200)

    Provider.name = "sms"
    Provider.provider = name
    Provider.script = script  # type: ignore[attr-defined]
    return Provider(Settings())


def sent(channel: Channel[NoSettings]) -> list[uuid.UUID]:
    return list(channel.script.sent)  # type: ignore[attr-defined]


SETTINGS = Settings().configure(SmsSettings, breaker_min_calls=4, breaker_cooldown_seconds=10.0)


def failover(*providers: Channel[NoSettings], clock: Clock | None = None) -> Failover:
    cls = failover_class(SmsChannel)
    return cls(SETTINGS, list(providers), clock or Clock())


def note() -> Notification:
    return Notification(uuid.uuid4(), "sms", TO, "disk almost full")


async def test_the_first_provider_sends_and_is_named_in_the_receipt() -> None:
    first, second = provider("twilio"), provider("vonage")
    receipt = await failover(first, second).send(n := note())
    assert receipt == Receipt("twilio-1", 200, "twilio")
    assert sent(first) == [n.uuid] and sent(second) == []


async def test_an_error_proving_nothing_was_taken_goes_to_the_next_provider() -> None:
    first, second = provider("twilio", refused("twilio")), provider("vonage")
    receipt = await failover(first, second).send(n := note())
    assert receipt is not None and receipt.provider == "vonage"
    assert sent(second) == [n.uuid]


async def test_a_timeout_after_sending_sticks_to_the_provider() -> None:
    first = provider("twilio", TransientError("timed out"), refused("twilio"))
    second = provider("vonage")
    channel = failover(first, second)
    n = note()
    with pytest.raises(TransientError, match="timed out") as caught:
        await channel.send(n)
    assert caught.value.provider == "twilio"
    # Even an error that proves *this* call was not taken: the first one may have been.
    with pytest.raises(TransientError, match="refused"):
        await channel.send(n)
    receipt = await channel.send(n)
    assert receipt is not None and receipt.provider == "twilio"
    assert sent(second) == []
    other = await channel.send(note())  # only that notification was sticky
    assert other is not None and other.provider == "twilio"


async def cut_off(channel: Failover, n: Notification) -> None:
    """Send ``n`` under a deadline shorter than the provider's answer (the policy's)."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await channel.send(n)


async def test_a_send_cut_off_by_the_deadline_sticks_to_the_provider() -> None:
    channel = failover(
        provider("twilio", Hang("hung"), refused("twilio")), second := provider("vonage")
    )
    await cut_off(channel, n := note())
    with pytest.raises(TransientError, match="refused"):  # the hung request may have landed
        await channel.send(n)
    receipt = await channel.send(n)
    assert receipt is not None and receipt.provider == "twilio"
    assert sent(second) == []


async def test_sends_cut_off_by_the_deadline_count_against_the_provider() -> None:
    channel = failover(provider("twilio", *[Hang("hung")] * 4), provider("vonage"))
    for _ in range(4):  # the breaker's minimum of calls
        await cut_off(channel, note())
    assert channel.states()["twilio"] is State.OPEN


async def test_only_the_latest_sticky_notifications_are_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(providers, "STICKY_MAX", 2)
    first = provider("twilio", *[TransientError("timed out")] * 3, refused("twilio"))
    channel = failover(first, second := provider("vonage"))
    oldest, *latest = [note() for _ in range(3)]
    for n in (oldest, *latest):
        with pytest.raises(TransientError):
            await channel.send(n)
    assert set(channel._sticky) == {n.uuid for n in latest}
    receipt = await channel.send(oldest)  # forgotten: a refusal fails it over again
    assert receipt is not None and receipt.provider == "vonage"
    assert sent(second) == [oldest.uuid]


async def test_a_permanent_error_is_never_failed_over() -> None:
    first = provider("twilio", PermanentError("invalid number", status=400))
    second = provider("vonage")
    with pytest.raises(PermanentError) as caught:
        await failover(first, second).send(note())
    assert caught.value.provider == "twilio"
    assert sent(second) == []


async def test_the_last_providers_failover_error_is_raised() -> None:
    channel = failover(provider("twilio", refused("twilio")), provider("vonage", refused("v")))
    with pytest.raises(TransientError) as caught:
        await channel.send(note())
    assert caught.value.provider == "vonage"


async def test_an_open_breaker_skips_its_provider_until_it_half_opens() -> None:
    clock = Clock()
    first = provider("twilio", *(refused("twilio") for _ in range(4)))
    second = provider("vonage")
    channel = failover(first, second, clock=clock)
    for _ in range(4):
        await channel.send(note())
    assert channel.states() == {"twilio": State.OPEN, "vonage": State.CLOSED}
    gauge = metrics.BREAKER_STATE.labels("sms", "twilio")._value.get()
    assert gauge == int(State.OPEN)
    for _ in range(5):
        receipt = await channel.send(note())
        assert receipt is not None and receipt.provider == "vonage"
    assert len(first.script.answers) == 0 and sent(first) == []  # type: ignore[attr-defined]
    clock.now += 10.0
    receipt = await channel.send(note())  # the first call after the cool-down is a probe
    assert receipt is not None and receipt.provider == "twilio"
    assert channel.states()["twilio"] is State.CLOSED


async def test_every_breaker_open_is_throttled_until_the_first_half_opens() -> None:
    clock = Clock()
    first = provider("twilio", *(refused("twilio") for _ in range(4)))
    second = provider("vonage", *(refused("vonage") for _ in range(4)))
    channel = failover(first, second, clock=clock)
    for _ in range(4):
        with pytest.raises(TransientError):
            await channel.send(note())
    clock.now += 3.0
    with pytest.raises(Throttled) as caught:
        await channel.send(note())
    assert caught.value.retry_after == pytest.approx(7.0)


async def test_a_sticky_notification_waits_for_its_open_provider() -> None:
    clock = Clock()
    timeouts = (TransientError("timed out") for _ in range(4))
    first, second = provider("twilio", *timeouts), provider("vonage")
    channel = failover(first, second, clock=clock)
    stuck = note()
    with pytest.raises(TransientError):
        await channel.send(stuck)
    for _ in range(3):  # timeouts count against the breaker: it opens
        with pytest.raises(TransientError):
            await channel.send(note())
    assert channel.states()["twilio"] is State.OPEN
    fresh = await channel.send(note())
    assert fresh is not None and fresh.provider == "vonage"
    with pytest.raises(Throttled, match="never through another provider") as waiting:
        await channel.send(stuck)  # no attempt spent while it waits for its provider
    assert waiting.value.retry_after == pytest.approx(10.0)
    clock.now += 10.0
    receipt = await channel.send(stuck)
    assert receipt is not None and receipt.provider == "twilio"
    assert stuck.uuid not in sent(second)


def test_validation_asks_every_provider() -> None:
    channel = failover(provider("twilio"), provider("vonage"))
    assert channel.name == "sms"
    bad = Notification(uuid.uuid4(), "sms", "4155552671", "x")
    assert channel.validate(bad) == [FieldError("to", "twilio wants +")]


def test_the_attempt_history_names_the_provider_that_answered() -> None:
    n = note()
    ok = Tried(1.0, 2.0, Receipt("SM1", 201, "vonage")).entry(n, "sms", 1)
    assert (ok.provider, ok.message_id, ok.outcome) == ("vonage", "SM1", AttemptOutcome.SENT)
    error = TransientError("timed out")
    error.provider = "twilio"
    failed = Tried(1.0, 2.0, None, error, "TransientError").entry(n, "sms", 1)
    assert failed.provider == "twilio"
    assert Tried(1.0, 2.0).entry(n, "log", 1).provider == "log"


# Settings: which providers, and bad lists stopping start-up.

TWILIO = SmsSettings(account_sid="AC1", auth_token=Secret("t"), from_="+15005550006")
VONAGE = VonageSettings(api_key="k", api_secret=Secret("s"), from_="+15005550007")


def test_every_provider_is_registered_with_its_settings() -> None:
    assert {"twilio", "vonage", "smtp", "smtp_backup"} <= set(channels.PROVIDERS)
    assert VonageSettings in channels.sections() and SmtpBackupSettings in channels.sections()
    assert [c.provider for c in channels.providers_of("sms")] == ["twilio", "vonage"]
    assert EmailChannel.provider == "smtp" and channels.REGISTRY["log"].provider == "log"


def test_the_default_is_the_channels_own_provider_alone() -> None:
    assert provider_names(SmsChannel, Settings()) == ("twilio",)
    assert "sms" in channels.disabled(Settings())  # unconfigured twilio: off, no error
    sms = channels.enabled(Settings().with_sections(TWILIO))["sms"]
    assert isinstance(sms, Failover)
    assert [p.provider for p in sms.providers] == ["twilio"]


def test_listed_providers_are_used_in_their_order() -> None:
    settings = Settings().with_sections(VONAGE, replace(TWILIO, providers="vonage,twilio"))
    sms = channels.enabled(settings)["sms"]
    assert isinstance(sms, Failover)
    expected: list[type[channels.AnyChannel]] = [VonageChannel, SmsChannel]
    assert [type(p) for p in sms.providers] == expected


def test_a_listed_provider_alone_needs_only_its_own_settings() -> None:
    settings = Settings().configure(SmsSettings, providers="vonage").with_sections(VONAGE)
    assert "sms" not in channels.disabled(settings)


def test_an_unconfigured_listed_provider_stops_start_up_naming_it() -> None:
    settings = Settings().with_sections(TWILIO).configure(SmsSettings, providers="twilio,vonage")
    with pytest.raises(ConfigError, match="NOTIFSVC_SMS_PROVIDERS names 'vonage'") as caught:
        channels.enabled(settings)
    assert "NOTIFSVC_VONAGE_API_KEY" in str(caught.value)
    unwanted = config.Settings(channels=frozenset({"log"})).with_sections(*settings.sections)
    assert "sms" in channels.disabled(unwanted)  # a channel not wanted is not checked


def test_an_unknown_provider_is_refused_when_the_settings_are_read() -> None:
    env = {"NOTIFSVC_SMS_PROVIDERS": "twilio,messagebird"}
    with pytest.raises(
        ConfigError, match=r"NOTIFSVC_SMS_PROVIDERS.*unknown provider 'messagebird'"
    ):
        config.load(env, sections=channels.sections())
    with pytest.raises(ConfigError, match="names a provider twice"):
        config.load({"NOTIFSVC_EMAIL_PROVIDERS": "smtp,SMTP"}, sections=channels.sections())


def test_provider_variables_are_known_and_renamed_ones_still_named() -> None:
    env = {
        "NOTIFSVC_EMAIL_PROVIDERS": "smtp_backup, smtp",
        "NOTIFSVC_SMTP_BACKUP_HOST": "backup.example.com",
        "NOTIFSVC_SMTP_BACKUP_FROM": "n@example.com",
        "NOTIFSVC_VONAGE_API_KEY": "k",
        "NOTIFSVC_SMS_BREAKER_FAILURE_RATE": "0.25",
    }
    settings = config.load(env, sections=channels.sections())
    assert settings.section(EmailSettings).provider_names == ("smtp_backup", "smtp")
    assert settings.section(SmtpBackupSettings).host == "backup.example.com"
    assert settings.section(SmsSettings).policy().failure_rate == 0.25
    assert config.to_env(settings)["NOTIFSVC_EMAIL_PROVIDERS"] == "smtp_backup,smtp"
    with pytest.raises(ConfigError, match="NOTIFSVC_SMTP_HOST was renamed NOTIFSVC_EMAIL_HOST"):
        config.load({"NOTIFSVC_SMTP_HOST": "x"}, sections=channels.sections())


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NOTIFSVC_SMS_BREAKER_FAILURE_RATE", "0"),
        ("NOTIFSVC_SMS_BREAKER_PROBE_SHARE", "1.5"),
        ("NOTIFSVC_EMAIL_BREAKER_WINDOW_SECONDS", "0.5"),
        ("NOTIFSVC_EMAIL_BREAKER_COOLDOWN_SECONDS", "inf"),
        ("NOTIFSVC_SMS_BREAKER_MIN_CALLS", "0"),
    ],
)
def test_unusable_breaker_settings_are_refused(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        config.load({variable: value}, sections=channels.sections())


def test_the_failover_channel_states_its_primarys_validation_rules() -> None:
    for primary in (SmsChannel, EmailChannel):
        cls = failover_class(primary)
        for attr in ("recipient_pattern", "subject_pattern", "max_subject_chars", "max_body_chars"):
            assert getattr(cls, attr, None) == getattr(primary, attr, None), (primary, attr)
        assert cls.Config is primary.Config and cls.name == primary.name


async def test_a_sticky_notification_stays_sticky_through_a_later_refusal() -> None:
    """Taken maybe (a timeout), then refused on the retry while the breaker opens: the
    refusal proves nothing of the first call, so it never goes to the other provider."""
    clock = Clock()
    answers = [TransientError("timed out"), *(refused("twilio") for _ in range(4))]
    first, second = provider("twilio", *answers), provider("vonage")
    channel = failover(first, second, clock=clock)
    stuck = note()
    with pytest.raises(TransientError, match="timed out"):
        await channel.send(stuck)
    with pytest.raises(TransientError, match="refused"):
        await channel.send(stuck)
    for _ in range(3):  # other notifications fail over, and the breaker opens
        await channel.send(note())
    assert channel.states()["twilio"] is State.OPEN
    with pytest.raises(Throttled):
        await channel.send(stuck)
    assert stuck.uuid not in sent(second)
