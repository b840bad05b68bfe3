"""The operator commands against the real receiver, router and notificator, on the real
broker and database, with API keys on: list filters, show, cancel, retry, replay --wait."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from integration.helpers import deliveries, eventually, running
from notifsvc import cli, config
from notifsvc.channels.log import LogChannel, LogSettings
from notifsvc.config import Secret, Settings
from notifsvc.db.store import Outcome, Store
from notifsvc.model import Notification, Priority, State
from notifsvc.notificator import Notificator
from notifsvc.receiver import ReceiverServer
from notifsvc.router import Router

KEY = "ops-key-for-the-cli"
THROTTLED = "throttled: the provider kept throttling for 3600 s"


@dataclass
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
async def keyed(settings: Settings) -> AsyncIterator[Settings]:
    """A receiver that wants an API key, and settings whose replay runner polls often."""
    keyed = dataclasses.replace(settings, api_keys=(Secret(KEY),), replay_poll_ms=100)
    async with running(ReceiverServer(keyed)):
        yield keyed


def invoke(argv: list[str], env: dict[str, str]) -> int:
    """``notifsvc.cli.main`` without its logging set-up (it would replace pytest's)."""
    try:
        return cli._dispatch(cli._parser().parse_args(argv), config.load(env))
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture
def ops(keyed: Settings, capsys: pytest.CaptureFixture[str]) -> Ops:
    return Ops(keyed, capsys)


class Ops:
    """Runs ``notifsvc`` command lines (in a thread: each runs its own event loop)."""

    def __init__(self, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = f"http://127.0.0.1:{settings.http_port}"
        self._capsys = capsys

    async def __call__(self, *argv: str) -> Ran:
        env = {"NOTIFSVC_API_URL": self.url, "NOTIFSVC_API_KEY": KEY}
        code = await asyncio.to_thread(invoke, list(argv), env)
        out, err = self._capsys.readouterr()
        return Ran(code, out, err)


async def seed(store: Store, state: State, n: int = 1, **kw: object) -> list[uuid.UUID]:
    """``n`` stored notifications in ``state`` (sent or failed ones with their outcome)."""
    channel = str(kw.pop("channel", "log"))
    priority = Priority(str(kw.pop("priority", "normal")))
    error = str(kw.pop("error", THROTTLED))
    notes = [
        Notification(uuid.uuid4(), channel, f"ops-{i}", "disk full", priority=priority,
                     accepted_at=time.time())
        for i in range(n)
    ]  # fmt: skip
    await store.insert(notes)
    uids = [x.uuid for x in notes]
    if state != State.RECEIVED:
        await store.mark_forwarded(uids)
    if state in (State.SENT, State.FAILED):
        failed = state == State.FAILED
        await store.record([Outcome(u, state, 3, error if failed else None) for u in uids])
    return uids


async def state_of(store: Store, uid: uuid.UUID) -> str:
    row = await store.get(uid)
    assert row is not None
    return str(row["state"])


def listed(ran: Ran) -> set[str]:
    assert ran.code == 0, ran.err
    return {orjson.loads(line)["uuid"] for line in ran.out.splitlines()}


def ids(uids: list[uuid.UUID]) -> set[str]:
    return {str(u) for u in uids}


async def test_replay_wait_requeues_the_failed_rows_once(
    keyed: Settings, ops: Ops, store: Store
) -> None:
    failed = await seed(store, State.FAILED, 6)
    other = await seed(store, State.FAILED, 2, channel="email")
    sent = await seed(store, State.SENT)
    log_path = keyed.section(LogSettings).path
    assert log_path is not None
    async with running(Router(keyed)), running(Notificator(keyed, LogChannel(keyed))):
        ran = await ops(
            "replay", "--channel", "log", "--since", "1h", "--wait", "--interval", "0.1"
        )
        assert ran.code == 0, ran.err
        job_id, result = ran.out.splitlines()
        assert result == "matched 6, requeued 6, skipped 0"
        assert ran.err.splitlines()[-1] == f"replay {job_id}: done, {result}"

        async def delivered() -> bool:
            return set(deliveries(log_path)) >= ids(failed)

        await eventually(delivered)

        async def all_sent() -> bool:
            return {await state_of(store, u) for u in failed} == {"sent"}

        await eventually(all_sent)
        again = await ops("replay", "--channel", "log", "--wait", "--interval", "0.1")
        assert again.out.splitlines()[1] == "matched 0, requeued 0, skipped 0"
    seen = deliveries(log_path)
    assert {u: seen[u] for u in ids(failed)} == dict.fromkeys(ids(failed), 1)
    assert str(sent[0]) not in seen
    assert {await state_of(store, u) for u in other} == {"failed"}
    shown = await ops("replays", "show", job_id)
    assert shown.out.splitlines()[0] == f"{job_id}  done  {result}"
    jobs = await ops("replays", "list")
    assert [line.split()[0] for line in jobs.out.splitlines()][1] == job_id  # newest first


async def test_the_receivers_problems_are_one_line(ops: Ops) -> None:
    ran = await ops("replays", "show", "rpl_nope")
    assert ran.code == 1
    assert ran.err.startswith("notifsvc replays: 422 Invalid replay id: must be a replay job id")
    assert ran.err.count("\n") == 1
    ran = await ops("replays", "show", "rpl_" + "0" * 32)
    assert ran.err == f"notifsvc replays: 404 Not Found: no replay job rpl_{'0' * 32}\n"


async def test_list_filters(ops: Ops, store: Store) -> None:
    failed = await seed(store, State.FAILED, 3)
    high = await seed(store, State.FAILED, 2, priority="high", error="boom: HTTP 500")
    email = await seed(store, State.FAILED, 1, channel="email")
    sent = await seed(store, State.SENT, 2)
    waiting = await seed(store, State.FORWARDED, 1)
    everything = failed + high + email + sent + waiting

    base = ("notifications", "list", "--json", "--all", "--limit", "2")
    assert listed(await ops(*base)) == ids(everything)
    assert listed(await ops(*base, "--state", "failed", "--channel", "log")) == ids(failed + high)
    assert listed(await ops(*base, "--reason", "throttled")) == ids(failed + email)
    assert listed(await ops(*base, "--priority", "high")) == ids(high)
    assert listed(await ops(*base, "--state", "sent", "--since", "10m")) == ids(sent)
    ran = await ops("notifications", "list", "--until", "1h")
    assert (ran.code, ran.out.count("\n"), ran.err) == (0, 1, "no notification matches\n")

    ran = await ops("notifications", "list", "--channel", "log", "--limit", "2")
    lines = ran.out.splitlines()
    assert lines[0].split()[:3] == ["uuid", "channel", "state"] and len(lines) == 3
    cursor = ran.err.split("--cursor ")[1].strip()
    rest = await ops("notifications", "list", "--channel", "log", "--cursor", cursor, "--json")
    assert listed(rest).isdisjoint(line.split()[0] for line in lines[1:])
    forged = await ops("notifications", "list", "--channel", "email", "--cursor", cursor)
    assert forged.code == 1
    assert forged.err.startswith("notifsvc notifications: 422 ") and "cursor" in forged.err


async def test_show_cancel_and_retry(keyed: Settings, ops: Ops, store: Store) -> None:
    (waiting,) = await seed(store, State.FORWARDED)
    (sent,) = await seed(store, State.SENT)
    (failed,) = await seed(store, State.FAILED)

    ran = await ops("notifications", "show", str(failed))
    assert ran.code == 0, ran.err
    assert ["state", "failed"] in [line.split() for line in ran.out.splitlines()]
    assert ["reason", "throttled"] in [line.split() for line in ran.out.splitlines()]

    ran = await ops("cancel", str(waiting))
    assert (ran.code, ran.out) == (0, f"{waiting}: canceled\n")
    assert (await ops("cancel", str(waiting))).code == 0  # canceled already: still fine
    ran = await ops("cancel", str(sent))
    assert ran.code == 1 and ran.err.startswith("notifsvc cancel: 409 ")
    unknown = uuid.uuid4()
    ran = await ops("cancel", str(unknown))
    assert ran.code == 1 and ran.err.startswith("notifsvc cancel: 404 Not Found: ")
    assert str(unknown) in ran.err

    async with running(Notificator(keyed, LogChannel(keyed))):
        ran = await ops("retry", str(failed))
        assert (ran.code, ran.out) == (0, f"{failed}: forwarded, sent again\n")

        async def sent_again() -> bool:
            return await state_of(store, failed) == "sent"

        await eventually(sent_again)
    ran = await ops("retry", str(failed))
    assert ran.code == 1 and ran.err.startswith("notifsvc retry: 409 ")
    assert await state_of(store, waiting) == "canceled"


async def test_the_console_script_with_a_key_file(
    keyed: Settings, store: Store, tmp_path: Path
) -> None:
    """As an operator runs it: the key from a file, no request logging on stderr; a wrong
    key is one line saying which setting to fix."""
    (failed,) = await seed(store, State.FAILED)
    key_file = tmp_path / "api-key"
    key_file.write_text(KEY + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFSVC_")}
    env["NOTIFSVC_API_URL"] = f"http://127.0.0.1:{keyed.http_port}"
    argv = [sys.executable, "-m", "notifsvc", "notifications", "show", str(failed)]

    async def run(extra: dict[str, str]) -> tuple[int | None, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env | extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await run({"NOTIFSVC_API_KEY_FILE": str(key_file)})
    assert (code, err) == (0, "")
    assert ["uuid", str(failed)] in [line.split() for line in out.splitlines()]
    assert "attempts: none recorded" in out
    code, out, err = await run({"NOTIFSVC_API_KEY": "wrong"})
    assert (code, out) == (1, "")
    assert err.startswith("notifsvc notifications: 401 Unauthorized: ")
    assert err.endswith("(set NOTIFSVC_API_KEY or NOTIFSVC_API_KEY_FILE)\n")
