"""The slack channel against a fake Slack Web API."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from integration.channels.support import SHORT_TIMEOUT_MS, note, started
from notifsvc.channels import PermanentError, Throttled, TransientError
from notifsvc.channels.slack import SlackChannel
from notifsvc.config import Secret, Settings
from notifsvc.dev.fakes.script import HANG, Reply
from notifsvc.dev.fakes.slack import FakeSlack, slack_error

TO = "C0123456789"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def channel_for(fake: FakeSlack, *, send_timeout_ms: int = 2000, **overrides: Any) -> SlackChannel:
    config = dataclasses.replace(fake.config(), **overrides)
    return SlackChannel(Settings(send_timeout_ms=send_timeout_ms).with_sections(config))


async def send(fake: FakeSlack, to: str = TO, **overrides: Any) -> None:
    async with started(channel_for(fake, **overrides)) as channel:
        await channel.send(note("slack", to, "disk almost full ⚠", subject="Disk"))


async def test_posts_json_with_bearer_token(slack: FakeSlack) -> None:
    await send(slack)
    assert slack.messages == [{"channel": TO, "text": "*Disk*\ndisk almost full ⚠"}]
    [seen] = slack.seen
    assert seen.path == "/api/chat.postMessage"
    assert seen.headers["Authorization"] == f"Bearer {slack.token}"
    assert seen.headers["Content-Type"].startswith("application/json")
    assert seen.json() == slack.messages[0]


async def test_channel_name_recipient(slack: FakeSlack) -> None:
    await send(slack, "#ops-alerts")
    assert [m["channel"] for m in slack.messages] == ["#ops-alerts"]


async def test_wrong_token_is_permanent(slack: FakeSlack) -> None:
    with pytest.raises(PermanentError, match="invalid_auth"):
        await send(slack, token=Secret("xoxb-wrong"))
    assert slack.messages == []


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "is_archived"])
async def test_ok_false_is_permanent(slack: FakeSlack, error: str) -> None:
    slack.script.push(slack_error(error))
    with pytest.raises(PermanentError, match=error):
        await send(slack)
    assert slack.messages == []


async def test_http_429_is_throttled_with_retry_after(slack: FakeSlack) -> None:
    slack.script.push(Reply(429, headers={"Retry-After": "3"}))
    with pytest.raises(Throttled) as caught:
        await send(slack)
    assert caught.value.retry_after == 3.0


async def test_ok_false_ratelimited_is_throttled_with_retry_after(slack: FakeSlack) -> None:
    slack.script.push(slack_error("ratelimited", retry_after=5))
    with pytest.raises(Throttled, match="ratelimited") as caught:
        await send(slack)
    assert caught.value.retry_after == 5.0


async def test_internal_error_is_transient_then_it_succeeds(slack: FakeSlack) -> None:
    slack.script.push(slack_error("internal_error"), 503)
    async with started(channel_for(slack)) as channel:
        for _ in range(2):
            with pytest.raises(TransientError):
                await channel.send(note("slack", TO))
        await channel.send(note("slack", TO))
    assert len(slack.seen) == 3
    assert len(slack.messages) == 1


async def test_hang_times_out_as_transient(slack: FakeSlack) -> None:
    slack.script.push(HANG)
    with pytest.raises(TransientError, match="slack request failed"):
        await asyncio.wait_for(send(slack, send_timeout_ms=SHORT_TIMEOUT_MS), 5)
    assert slack.messages == []
