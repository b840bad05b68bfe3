"""Every registered channel's provider fake (``Channel.fake``) keeps the fake contract: it
starts and stops as a real server, points its channel at itself with ``config()`` (a
section with which the channel is enabled), and lists what it received with
``deliveries()`` — what ``notifsvc dev`` and the tests rely on."""

from __future__ import annotations

import pytest

from integration.channels.support import note, started
from notifsvc.channels import REGISTRY
from notifsvc.config import Settings
from notifsvc.dev.standins import make_fake

WITH_FAKES = sorted(name for name, cls in REGISTRY.items() if cls.fake is not None)


def test_every_provider_channel_names_a_fake() -> None:
    without = sorted(set(REGISTRY) - set(WITH_FAKES))
    assert without == ["log"]  # the only channel without a provider


@pytest.mark.parametrize("name", WITH_FAKES)
async def test_the_fake_enables_its_channel_and_records_nothing_yet(name: str) -> None:
    cls = REGISTRY[name]
    fake = make_fake(name)
    async with fake:
        config = fake.config()
        assert type(config) is cls.Config
        assert cls.disabled_reason(Settings().with_sections(config)) is None
        assert fake.deliveries() == []
    await fake.stop()  # a second stop is safe


@pytest.mark.parametrize("name", WITH_FAKES)
async def test_a_send_to_its_recipient_shows_in_the_fakes_deliveries(name: str) -> None:
    cls = REGISTRY[name]
    async with make_fake(name) as fake:
        settings = Settings().with_sections(fake.config())
        channel = cls(settings)
        n = note(name, fake.recipient(), "disk almost full")
        assert channel.validate(n) == []
        async with started(channel):
            await channel.send(n)
        [delivery] = fake.deliveries()
    assert delivery.channel == name
    assert "disk almost full" in delivery.text
