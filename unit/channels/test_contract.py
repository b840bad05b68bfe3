"""The channel contract, checked once for every registered channel.

Each channel's own test module, ``unit/channels/test_<name>.py``, states its case as
``CASE`` (:class:`unit.channels.contract.Case`): its settings, a good recipient and some
bad ones. A channel added to ``REGISTRY`` without that module fails here.
"""

from __future__ import annotations

import importlib
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from notifsvc import config
from notifsvc.channels import REGISTRY, Channel, TransientError, push
from notifsvc.channels.log import LogSettings
from notifsvc.model import Notification
from unit.channels.contract import Case


def _case(name: str) -> Case:
    case = importlib.import_module(f"unit.channels.test_{name}").CASE
    assert isinstance(case, Case), f"unit/channels/test_{name}.py: CASE must be a Case"
    return case


CASES: dict[str, Case] = {name: _case(name) for name in REGISTRY}
NAMES = sorted(REGISTRY)


def note(name: str, to: str, txt: str = "disk almost full") -> Notification:
    return Notification(uuid=uuid.uuid4(), channel=name, to=to, txt=txt)


def test_every_registered_channel_has_a_contract_case() -> None:
    assert set(REGISTRY) == set(CASES)
    assert all(
        CASES[n].config is None or type(CASES[n].config) is REGISTRY[n].Config for n in CASES
    )


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
    settings = CASES[name].settings.with_sections(LogSettings(path=tmp_path / "d" / "l"))
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
    cls = REGISTRY[name].Config
    default = getattr(cls(), field)
    unconfigured = CASES[name].settings.configure(cls, **{field: default})
    reason = REGISTRY[name].disabled_reason(unconfigured)
    assert reason is not None
    assert cls.env_name(field) in reason


@pytest.mark.parametrize("name", NAMES)
def test_variables_are_under_the_channel_prefix(name: str) -> None:
    cls = REGISTRY[name].Config
    for field in config.env_fields(cls):
        assert cls.env_name(field.name).startswith(f"NOTIFSVC_{name.upper()}_")
    assert config.load({}).section(cls) == cls()


@pytest.mark.parametrize("name", NAMES)
async def test_stop_before_start_and_twice_is_safe(name: str, tmp_path: Path) -> None:
    settings = CASES[name].settings.with_sections(LogSettings(path=tmp_path / "log.jsonl"))
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


@pytest.mark.parametrize("name", NAMES)
def test_every_setting_says_what_it_means(name: str) -> None:
    """The README's channel settings table is generated from these (config.sections_table)."""
    undocumented = [
        var for var, f in config.variables(REGISTRY[name].Config) if not f.metadata.get("doc")
    ]
    assert undocumented == []


def test_push_channels_are_declared_and_have_a_fake() -> None:
    """``notifsvc dev`` prints a push stand-in's recipient and the benchmark measures push
    channels against their fakes: both take the list from the registry."""
    assert set(push()) == {"fcm", "apns", "webpush"}
    assert all(REGISTRY[name].fake is not None for name in push())
