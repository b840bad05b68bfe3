"""The channel contract, checked once for every registered channel.

A channel added to ``REGISTRY`` without an entry in :data:`CASES` fails here, so each new
channel states its settings, a good recipient and some bad ones.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from notifsvc.channels import REGISTRY, Channel, TransientError
from notifsvc.config import Secret, Settings, env_name
from notifsvc.model import Notification


@dataclass(frozen=True)
class Case:
    #: Settings with which the channel is enabled.
    settings: Settings
    #: Settings fields whose absence (default value) disables the channel.
    required: tuple[str, ...]
    good: str
    bad: tuple[str, ...]


CASES: dict[str, Case] = {
    "log": Case(Settings(), (), "ops-team", ("", "   ")),
    "webhook": Case(
        Settings(webhook_allowed_hosts=frozenset({"hooks.example.com"})),
        ("webhook_allowed_hosts",),
        "https://hooks.example.com/notify",
        ("ftp://hooks.example.com/x", "https://evil.example.net/", "not a url", ""),
    ),
    "email": Case(
        Settings(smtp_host="smtp.example.com", smtp_from="notifsvc@example.com"),
        ("smtp_host", "smtp_from"),
        "alice@example.com",
        ("alice", "alice@", "@example.com", "a b@example.com", "Alice <alice@example.com>", ""),
    ),
    "sms": Case(
        Settings(
            twilio_account_sid="AC123",
            twilio_auth_token=Secret("token"),
            twilio_from="+15005550006",
        ),
        ("twilio_account_sid", "twilio_auth_token", "twilio_from"),
        "+14155552671",
        ("4155552671", "+1 415 555 2671", "+1415555", "+0123456789", "alice@example.com", ""),
    ),
    "slack": Case(
        Settings(slack_token=Secret("xoxb-1")),
        ("slack_token",),
        "C0123456789",
        ("general", "#General", "c0123456789", "#" + "a" * 81, "X0123456789", ""),
    ),
}

NAMES = sorted(REGISTRY)
UNCONFIGURED = Settings()


def note(name: str, to: str, txt: str = "disk almost full") -> Notification:
    return Notification(uuid=uuid.uuid4(), channel=name, to=to, txt=txt)


def test_every_registered_channel_has_a_contract_case() -> None:
    assert set(REGISTRY) == set(CASES)


@pytest.mark.parametrize("name", NAMES)
def test_name_matches_registry_key(name: str) -> None:
    assert REGISTRY[name].name == name
    assert name == name.lower()


# Construction must not touch the network or the file system: audited, not mocked.
_AUDITED = ("socket.", "open", "os.mkdir", "os.open", "subprocess.")
#: (thread, events) while :func:`audited` is active; audit hooks cannot be removed.
_recording: list[tuple[int, list[str]]] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _recording and event.startswith(_AUDITED):
        thread, events = _recording[-1]
        if thread == threading.get_ident():
            events.append(event)


sys.addaudithook(_audit)


@contextmanager
def audited() -> Iterator[list[str]]:
    events: list[str] = []
    _recording.append((threading.get_ident(), events))
    try:
        yield events
    finally:
        _recording.pop()


def test_the_audit_hook_sees_io(tmp_path: Path) -> None:
    with audited() as events:
        (tmp_path / "x").write_text("x")
    assert "open" in events


@pytest.mark.parametrize("name", NAMES)
def test_constructs_without_io(name: str, tmp_path: Path) -> None:
    """Synchronous on purpose: with no event loop running, no client session can be made."""
    settings = dataclasses.replace(CASES[name].settings, log_channel_path=tmp_path / "d" / "l")
    with audited() as events:
        channel = REGISTRY[name](settings)
    assert events == []
    assert isinstance(channel, Channel)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("name", NAMES)
def test_accepts_a_good_recipient(name: str) -> None:
    case = CASES[name]
    channel = REGISTRY[name](case.settings)
    assert channel.validate_recipient(case.good) == []
    assert channel.validate(note(name, case.good)) == []


@pytest.mark.parametrize(("name", "bad"), [(n, b) for n in NAMES for b in CASES[n].bad])
def test_rejects_a_bad_recipient_on_to(name: str, bad: str) -> None:
    channel = REGISTRY[name](CASES[name].settings)
    errors = channel.validate(note(name, bad))
    assert [e.field for e in errors] == ["to"]
    assert errors[0].message


@pytest.mark.parametrize("name", NAMES)
def test_txt_length_limit(name: str) -> None:
    case = CASES[name]
    cls = REGISTRY[name]
    channel = cls(case.settings)
    assert channel.validate(note(name, case.good, "x" * cls.max_body_chars)) == []
    errors = channel.validate(note(name, case.good, "x" * (cls.max_body_chars + 1)))
    assert [e.field for e in errors] == ["txt"]
    assert [e.field for e in channel.validate(note(name, case.good, ""))] == ["txt"]


@pytest.mark.parametrize("name", NAMES)
def test_enabled_when_configured(name: str) -> None:
    assert REGISTRY[name].disabled_reason(CASES[name].settings) is None


@pytest.mark.parametrize(("name", "field"), [(n, f) for n in NAMES for f in CASES[n].required])
def test_disabled_reason_names_the_missing_variable(name: str, field: str) -> None:
    default = getattr(UNCONFIGURED, field)
    unconfigured = dataclasses.replace(CASES[name].settings, **{field: default})
    reason = REGISTRY[name].disabled_reason(unconfigured)
    assert reason is not None
    assert env_name(field) in reason


@pytest.mark.parametrize("name", NAMES)
async def test_stop_before_start_and_twice_is_safe(name: str, tmp_path: Path) -> None:
    settings = dataclasses.replace(CASES[name].settings, log_channel_path=tmp_path / "log.jsonl")
    channel = REGISTRY[name](settings)
    await channel.stop()
    await channel.start()
    await channel.stop()
    await channel.stop()


@pytest.mark.parametrize("name", NAMES)
async def test_send_before_start_is_a_transient_error(name: str) -> None:
    case = CASES[name]
    channel = REGISTRY[name](case.settings)
    with pytest.raises(TransientError):
        await channel.send(note(name, case.good))
