"""The operator commands' arguments, output and error lines, against a small HTTP server that
answers like the operator API's contract (the real receiver: integration/test_ops_cli.py)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from notifsvc import cli, config, ops_cli
from notifsvc.ops_cli import BarProgress, LineProgress, parse_time
from notifsvc.ops_client import Filter, Job, OpsClient, OpsError
from notifsvc.process import free_port

KEY = "operator-key"
SENT = uuid.UUID(int=1)
QUEUED = uuid.UUID(int=2)
UNKNOWN = uuid.UUID(int=3)
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def item(n: int, **extra: object) -> dict[str, object]:
    return {
        "uuid": str(uuid.UUID(int=100 + n)),
        "channel": "email",
        "state": "failed",
        "reason": "throttled",
        "received_at": f"2024-05-01T11:{n:02d}:00.000000+00:00",
        "to": f"user{n}@example.com",
        **extra,
    }


def problem(status: int, title: str, detail: str, **extra: object) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.json_response(body, status=status, content_type="application/problem+json")


@dataclass
class Fake:
    """What the fake receiver saw, and what it serves."""

    items: list[dict[str, object]] = field(default_factory=lambda: [item(n) for n in range(5)])
    seen: list[web.Request] = field(default_factory=list)
    bodies: list[object] = field(default_factory=list)
    polls: int = 0
    polled_twice: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""


FAKE = web.AppKey("fake", Fake)


@web.middleware
async def gate(request: web.Request, handler: Any) -> web.StreamResponse:
    request.app[FAKE].seen.append(request)
    if request.headers.get("Authorization") != f"Bearer {KEY}":
        return problem(401, "Unauthorized", "send Authorization: Bearer <api key>")
    response: web.StreamResponse = await handler(request)
    return response


async def list_notifications(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    cursor = request.query.get("cursor", "o0")
    if not cursor.startswith("o"):
        error = {"field": "cursor", "message": "was tampered with or comes from another filter"}
        return problem(422, "Invalid query", "the cursor is not valid", errors=[error])
    start, limit = int(cursor[1:]), int(request.query.get("limit", "2"))
    items = [i for i in fake.items if request.query.get("state", "failed") == i["state"]]
    end = start + limit
    next_cursor = f"o{end}" if end < len(items) else None
    return web.json_response({"items": items[start:end], "next_cursor": next_cursor})


async def get_notification(request: web.Request) -> web.Response:
    uid = request.match_info["uuid"]
    if uid == str(UNKNOWN):
        return problem(404, "Not Found", f"no notification {uid} is stored")
    return web.json_response(item(0, uuid=uid, attempts=2, last_error="throttled: 429"))


async def get_attempts(request: web.Request) -> web.Response:
    first = {"attempt_number": 1, "outcome": "throttled", "started_at": "t1", "status_code": 429}
    second = {"attempt_number": 2, "outcome": "failed", "error": "boom\x1b[2J\nagain"}
    return web.json_response({"uuid": request.match_info["uuid"], "attempts": [first, second]})


async def cancel(request: web.Request) -> web.Response:
    uid = request.match_info["uuid"]
    if uid == str(SENT):
        detail = f"it is too late to cancel notification {uid}"
        return problem(409, "Conflict", detail, state="sent")
    if uid == str(UNKNOWN):
        return problem(404, "Not Found", f"no notification {uid} is stored")
    return web.json_response(item(0, uuid=uid, state="canceled", reason=None))


async def retry(request: web.Request) -> web.Response:
    uid = request.match_info["uuid"]
    if uid == str(QUEUED):
        return problem(409, "Conflict", f"notification {uid} is not failed", state="forwarded")
    return web.json_response(item(0, uuid=uid, state="forwarded", reason=None), status=202)


def job(job_id: str, polls: int, body: object = None) -> dict[str, object]:
    done = polls >= 3
    return {
        "id": job_id,
        "state": "done" if done else "running",
        "filter": body or {"state": "failed", "channel": "email"},
        "matched": 5 if polls else 0,
        "requeued": min(polls, 3) + (1 if done else 0),
        "skipped": 1 if done else 0,
        "created_at": "2024-05-01T12:00:00+00:00",
        "updated_at": "2024-05-01T12:00:01+00:00",
        "finished_at": "2024-05-01T12:00:02+00:00" if done else None,
    }


async def post_replay(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[FAKE].bodies.append(body)
    return web.json_response(
        job(body.get("channel") or "j1", 0, body),
        status=202,
        headers={"Location": "/replays/j1"},
    )


async def get_replay(request: web.Request) -> web.Response:
    fake, job_id = request.app[FAKE], request.match_info["id"]
    fake.polls += 1
    if fake.polls >= 2:
        fake.polled_twice.set()
    if job_id == "sms":  # a job whose receiver goes away while it is followed
        return problem(503, "Service Unavailable", "the database is unreachable")
    if job_id == "slack":  # a job that never finishes
        return web.json_response(job(job_id, 1))
    if job_id == "broken":
        return web.json_response({"id": "broken", "matched": "many"})
    if job_id == "proxy":
        return web.Response(status=502, text="<html>\n<b>Bad gateway</b>\n</html>")
    if job_id in {"email", "j1"}:
        return web.json_response(job(job_id, fake.polls))
    return problem(404, "Not Found", f"no replay job {job_id}")


async def list_replays(_request: web.Request) -> web.Response:
    return web.json_response({"items": [job("j2", 3), job("j1", 1)]})


def app_of(fake: Fake) -> web.Application:
    app = web.Application(middlewares=[gate])
    app[FAKE] = fake
    app.router.add_get("/notifications", list_notifications)
    app.router.add_get("/notification/{uuid}", get_notification)
    app.router.add_get("/notification/{uuid}/attempts", get_attempts)
    app.router.add_delete("/notification/{uuid}", cancel)
    app.router.add_post("/notification/{uuid}/retry", retry)
    app.router.add_post("/replays", post_replay)
    app.router.add_get("/replays", list_replays)
    app.router.add_get("/replays/{id}", get_replay)
    return app


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    state = Fake()
    server = TestServer(app_of(state), host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/")).rstrip("/")
    yield state
    await server.close()


@dataclass
class Ran:
    code: int
    out: str
    err: str


Run = Callable[..., Awaitable[Ran]]


def invoke(argv: list[str], env: dict[str, str]) -> int:
    """What ``notifsvc.cli.main`` does, but without replacing the test's log handlers."""
    try:
        return cli._dispatch(cli._parser().parse_args(argv), config.load(env))
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture
def run(fake: Fake, capsys: pytest.CaptureFixture[str]) -> Run:
    """Run a ``notifsvc`` command line (in a thread: it runs its own event loop) against
    the fake receiver, with its API key unless ``env`` says otherwise."""

    async def go(*argv: str, **env: str) -> Ran:
        env = {"NOTIFSVC_API_URL": fake.url, "NOTIFSVC_API_KEY": KEY} | env
        env = {k: v for k, v in env.items() if v}
        code = await asyncio.to_thread(invoke, list(argv), env)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return go


# -- time arguments -----------------------------------------------------------------------


@given(st.integers(0, 10_000), st.sampled_from(["s", "m", "h", "d"]))
def test_an_age_means_now_minus_that(n: int, unit: str) -> None:
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_time(f"{n}{unit}", NOW) == NOW - timedelta(seconds=n * seconds)


def test_ages_compose() -> None:
    assert parse_time("1h30m", NOW) == NOW - timedelta(minutes=90)
    assert parse_time(" 1d2h3m4s ", NOW) == NOW - timedelta(days=1, seconds=7384)


@given(st.datetimes(), st.integers(-23 * 60 - 59, 23 * 60 + 59))
def test_an_rfc3339_time_is_taken_as_is(local: datetime, offset: int) -> None:
    when = local.replace(tzinfo=timezone(timedelta(minutes=offset)))
    parsed = parse_time(when.isoformat(), NOW)
    assert parsed == when and parsed.utcoffset() == when.utcoffset()
    assert parse_time(when.isoformat().replace("+00:00", "Z"), NOW) == when


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2024-05-01T12:00:00", "has no UTC offset"),
        ("yesterday", "neither an RFC 3339 time"),
        ("1.5h", "neither an RFC 3339 time"),
        ("15", "neither an RFC 3339 time"),
        ("-5m", "neither an RFC 3339 time"),
        ("99999999999d", "before the year 1"),
    ],
)
def test_a_malformed_time_is_refused_naming_the_forms(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_time(text, NOW)


# -- bad arguments: exit 2 before any request ---------------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["cancel", "not-a-uuid"], "'not-a-uuid' is not a UUID"),
        (["retry", "12"], "'12' is not a UUID"),
        (["notifications", "show", "x"], "is not a UUID"),
        (["notifications", "list", "--limit", "0"], "expected a number from 1 to 200"),
        (["notifications", "list", "--limit", "201"], "expected a number from 1 to 200"),
        (["notifications", "list", "--state", "lost"], "invalid choice: 'lost'"),
        (["notifications", "list", "--channel", "fax"], "invalid choice: 'fax'"),
        (["notifications", "list", "--since", "soon"], "neither an RFC 3339 time"),
        (["notifications", "list", "--since", "1h", "--until", "2h"], "--since must be before"),
        (["replay"], "a replay without a filter would send every failed notification"),
        (["replay", "--state", "sent"], "unrecognized arguments: --state"),
        (["replay", "--channel", "email", "--interval", "0"], "expected seconds"),
        (["replays", "show"], "the following arguments are required: ID"),
    ],
)
async def test_a_bad_argument_exits_2_without_a_request(
    run: Run, fake: Fake, argv: list[str], says: str
) -> None:
    ran = await run(*argv)
    assert ran.code == 2
    assert says in ran.err
    assert fake.seen == []


async def test_the_help_lists_the_operator_commands(run: Run) -> None:
    ran = await run("--help")
    assert ran.code == 0
    for command in ("notifications", "cancel", "retry", "replay", "replays"):
        assert f"    {command} " in ran.out or f"    {command}\n" in ran.out


# -- notifications list / show ------------------------------------------------------------


async def test_list_sends_the_filters_and_prints_a_table(run: Run, fake: Fake) -> None:
    fake.items[0]["to"] = "\x1b[31mevil\nline"
    fake.items[1]["reason"] = None
    ran = await run(
        "notifications", "list", "--state", "failed", "--channel", "EMAIL", "--priority",
        "high", "--reason", "throttled", "--since", "2024-05-01T10:00:00+02:00",
        "--until", "2024-05-01T12:00:00Z",
    )  # fmt: skip
    assert ran.code == 0, ran.err
    (request,) = fake.seen
    assert dict(request.query) == {
        "state": "failed",
        "channel": "email",
        "priority": "high",
        "reason": "throttled",
        "since": "2024-05-01T10:00:00+02:00",
        "until": "2024-05-01T12:00:00+00:00",
    }
    lines = ran.out.splitlines()
    assert lines[0].split() == ["uuid", "channel", "state", "reason", "received_at", "to"]
    assert lines[1].split() == [str(uuid.UUID(int=100)), "email", "failed", "throttled",
                                "2024-05-01T11:00:00.000000+00:00", "[31mevil", "line"]  # fmt: skip
    assert lines[2].split()[3] == "-"
    assert "\x1b" not in ran.out
    column = lines[0].index("received_at")
    assert [line.index("2024-05-01T11:") for line in lines[1:]] == [column, column]
    assert "more match: add --all, or --cursor o2" in ran.err


async def test_a_relative_since_is_sent_as_an_absolute_time(run: Run, fake: Fake) -> None:
    before = datetime.now(UTC)
    ran = await run("notifications", "list", "--since", "2h")
    after = datetime.now(UTC)
    assert ran.code == 0, ran.err
    since = datetime.fromisoformat(fake.seen[0].query["since"])
    assert before - timedelta(hours=2) <= since <= after - timedelta(hours=2)


async def test_list_all_follows_the_cursor_to_the_last_page(run: Run, fake: Fake) -> None:
    ran = await run("notifications", "list", "--all", "--json", "--limit", "2")
    assert ran.code == 0, ran.err
    assert [orjson.loads(line) for line in ran.out.splitlines()] == fake.items
    assert [r.query.get("cursor") for r in fake.seen] == [None, "o2", "o4"]
    assert ran.err == ""


async def test_list_continues_from_a_cursor_and_says_when_nothing_matches(
    run: Run, fake: Fake
) -> None:
    ran = await run("notifications", "list", "--cursor", "o4")
    assert ran.code == 0
    assert len(ran.out.splitlines()) == 2 and "more match" not in ran.err
    ran = await run("notifications", "list", "--state", "sent")
    assert ran.code == 0
    assert ran.err == "no notification matches\n"


async def test_show_prints_the_state_and_every_attempt(run: Run) -> None:
    ran = await run("notifications", "show", str(uuid.UUID(int=7)))
    assert ran.code == 0, ran.err
    assert f"{'state':<11}  failed" in ran.out.splitlines()
    assert f"{'last_error':<11}  throttled: 429" in ran.out.splitlines()
    assert "attempts (2):" in ran.out
    assert "#1  throttled  t1  429" in ran.out
    assert "#2  failed  boom [2J again" in ran.out
    ran = await run("notifications", "show", "--json", str(uuid.UUID(int=7)))
    shown = orjson.loads(ran.out)
    assert shown["notification"]["attempts"] == 2 and len(shown["attempts"]) == 2


# -- cancel / retry -----------------------------------------------------------------------


async def test_cancel_prints_the_new_state(run: Run, fake: Fake) -> None:
    ran = await run("cancel", str(QUEUED))
    assert (ran.code, ran.out, ran.err) == (0, f"{QUEUED}: canceled\n", "")
    assert fake.seen[0].method == "DELETE"


async def test_cancel_of_a_sent_one_prints_the_servers_problem(run: Run) -> None:
    ran = await run("cancel", str(SENT))
    assert ran.code == 1
    assert ran.err == (
        f"notifsvc cancel: 409 Conflict: it is too late to cancel notification {SENT}"
        " [state: sent]\n"
    )
    ran = await run("cancel", str(UNKNOWN))
    assert ran.code == 1
    assert ran.err == f"notifsvc cancel: 404 Not Found: no notification {UNKNOWN} is stored\n"


async def test_retry(run: Run, fake: Fake) -> None:
    ran = await run("retry", str(SENT))
    assert (ran.code, ran.out) == (0, f"{SENT}: forwarded, sent again\n")
    assert (fake.seen[0].method, fake.seen[0].path) == ("POST", f"/notification/{SENT}/retry")
    ran = await run("retry", str(QUEUED))
    assert ran.code == 1
    assert "409 Conflict: notification" in ran.err and "is not failed [state: forwarded]" in ran.err


# -- errors -------------------------------------------------------------------------------


async def test_field_errors_of_a_problem_are_named(run: Run) -> None:
    ran = await run("notifications", "list", "--cursor", "forged")
    assert ran.code == 1
    assert ran.err == (
        "notifsvc notifications: 422 Invalid query: the cursor is not valid "
        "(cursor: was tampered with or comes from another filter)\n"
    )


async def test_a_missing_api_key_says_which_setting_to_set(run: Run) -> None:
    ran = await run("notifications", "list", NOTIFSVC_API_KEY="")
    assert ran.code == 1
    assert ran.err == (
        "notifsvc notifications: 401 Unauthorized: send Authorization: Bearer <api key> "
        "(set NOTIFSVC_API_KEY or NOTIFSVC_API_KEY_FILE)\n"
    )


async def test_the_api_key_can_come_from_a_file(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    ran = await run("replays", "list", NOTIFSVC_API_KEY="", NOTIFSVC_API_KEY_FILE=str(path))
    assert ran.code == 0, ran.err


async def test_an_error_that_is_not_a_problem_is_one_line_naming_the_url(
    run: Run, fake: Fake
) -> None:
    ran = await run("replays", "show", "proxy")
    assert ran.code == 1
    assert ran.err == (
        f"notifsvc replays: 502 Bad Gateway from {fake.url}/replays/proxy: "
        "<html> <b>Bad gateway</b> </html>\n"
    )


async def test_an_answer_of_the_wrong_shape_is_refused(run: Run) -> None:
    ran = await run("replays", "show", "broken")
    assert ran.code == 1
    assert ran.err.startswith("notifsvc replays: the receiver's answer is not a replay job: ")


async def test_a_refused_connection_names_the_url(run: Run) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    ran = await run("cancel", str(SENT), NOTIFSVC_API_URL=url)
    assert ran.code == 1
    assert ran.err.startswith(f"notifsvc cancel: cannot connect to the receiver at {url} (")
    assert ran.err.endswith("is it running there? (set NOTIFSVC_API_URL)\n")
    assert len(ran.err.splitlines()) == 1


async def test_a_receiver_that_does_not_answer_in_time() -> None:
    async def hang(_request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/replays/{id}", hang)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    try:
        async with OpsClient(url, timeout=0.2) as client:
            with pytest.raises(
                OpsError, match=f"no answer within 0.2 s from the receiver at {url}"
            ):
                await client.replay("j1")
    finally:
        await server.close()


async def test_a_dropped_connection_is_named() -> None:
    def drop(_request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    client = OpsClient("http://receiver:8090", transport=httpx.MockTransport(drop))
    async with client:
        with pytest.raises(OpsError) as caught:
            await client.replays()
    assert str(caught.value) == (
        "lost the connection to the receiver at http://receiver:8090 "
        "(Server disconnected without sending a response.)"
    )
    await client.close()  # safe twice


def test_a_malformed_api_url_is_refused_naming_the_variable() -> None:
    with pytest.raises(config.ConfigError, match="NOTIFSVC_API_URL='receiver:8090'"):
        config.load({"NOTIFSVC_API_URL": "receiver:8090"})


def test_the_default_url_is_the_receivers_default_address() -> None:
    settings = config.load({})
    assert settings.api_url == f"http://{settings.http_host}:{settings.http_port}"
    assert settings.api_key is None
    assert "NOTIFSVC_API_KEY_FILE" in config.known_variables()


# -- replays ------------------------------------------------------------------------------


async def test_replay_prints_the_job_id(run: Run, fake: Fake) -> None:
    ran = await run("replay", "--channel", "sms", "--reason", "throttled")
    assert (ran.code, ran.out, ran.err) == (0, "sms\n", "")
    assert fake.bodies == [{"channel": "sms", "reason": "throttled"}]


async def test_replay_wait_follows_the_job_until_it_is_done(run: Run, fake: Fake) -> None:
    ran = await run("replay", "--channel", "email", "--since", "1h", "--wait", "--interval", "0.01")
    assert ran.code == 0, ran.err
    assert ran.out == "email\nmatched 5, requeued 4, skipped 1\n"
    (body,) = fake.bodies
    assert isinstance(body, dict) and set(body) == {"channel", "since"}
    assert fake.polls == 3
    # Off a terminal: plain lines, the first and the last (others within LINE_EVERY).
    assert ran.err.splitlines() == [
        "replay email: running, matched 0, requeued 0, skipped 0",
        "replay email: done, matched 5, requeued 4, skipped 1",
    ]


async def test_a_failure_while_following_says_the_replay_goes_on(run: Run) -> None:
    ran = await run("replay", "--channel", "sms", "--wait", "--interval", "0.01")
    assert ran.code == 1
    assert ran.out == "sms\n"
    assert ran.err.splitlines()[-1] == (
        "notifsvc replay: 503 Service Unavailable: the database is unreachable; "
        "the replay goes on: notifsvc replays show sms --wait"
    )


async def test_replays_show_and_list(run: Run) -> None:
    ran = await run("replays", "show", "j1", "--wait", "--interval", "0.01")
    assert ran.code == 0, ran.err
    assert ran.out.splitlines()[0] == "j1  done  matched 5, requeued 4, skipped 1"
    assert "finished_at: 2024-05-01T12:00:02+00:00" in ran.out
    ran = await run("replays", "show", "--json", "nope")
    assert ran.code == 1
    assert ran.err == "notifsvc replays: 404 Not Found: no replay job nope\n"
    ran = await run("replays", "list")
    assert [line.split()[:2] for line in ran.out.splitlines()] == [
        ["j2", "done"],
        ["j1", "running"],
    ]


def test_line_progress_shows_changes_at_most_every_interval_and_always_the_end() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = LineProgress(out, every=10, clock=lambda: now[0])
    for t, polls in [(0, 0), (1, 1), (5, 2), (11, 2), (12, 3)]:
        now[0] = t
        progress.update(Job.of(job("j", polls)))
    progress.close()
    assert out.getvalue().splitlines() == [
        "replay j: running, matched 0, requeued 0, skipped 0",
        "replay j: running, matched 5, requeued 2, skipped 0",
        "replay j: done, matched 5, requeued 4, skipped 1",
    ]


def test_a_bar_on_a_terminal() -> None:
    out = io.StringIO()
    bar = BarProgress(out, force_terminal=True)
    bar.update(Job.of(job("j", 1)))
    bar.update(Job.of(job("j", 3)))
    bar.close()
    bar.close()
    shown = out.getvalue()
    assert "replay j" in shown and "5/5" in shown and "requeued 4, skipped 1" in shown
    assert isinstance(ops_cli.progress_for(io.StringIO()), LineProgress)


async def test_ctrl_c_while_waiting_stops_waiting(fake: Fake) -> None:
    """The console script as an operator runs it: no request logging on stderr, and Ctrl-C
    ends the wait (the job is the receiver's, it goes on) with exit code 130."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFSVC_")}
    env |= {"NOTIFSVC_API_URL": fake.url, "NOTIFSVC_API_KEY": KEY}
    argv = ["replay", "--channel", "slack", "--wait", "--interval", "0.05"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "notifsvc", *argv, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    async with asyncio.timeout(30):
        assert await proc.stdout.readline() == b"slack\n"
        await fake.polled_twice.wait()
        proc.send_signal(signal.SIGINT)
        _, err = await proc.communicate()
    assert proc.returncode == 130
    assert err.decode().splitlines()[-1] == "notifsvc replay: interrupted"
    assert "HTTP Request" not in err.decode()


def answering(status: int, body: bytes, content_type: str = "application/json") -> OpsClient:
    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": content_type})

    return OpsClient("http://receiver:8090", transport=httpx.MockTransport(answer))


@pytest.mark.parametrize(
    ("call", "status", "body", "says"),
    [
        ("page", 200, b'{"items": {}}', "the receiver's answer is not a page: {'items': {}}"),
        ("page", 200, b'{"items": [], "next_cursor": 5}', "has a malformed cursor: 5"),
        ("page", 200, b"[1, 2]", "the receiver's answer is not a JSON object: [1, 2]"),
        ("page", 200, b"<html>", "http://receiver:8090/notifications answered 200 without JSON"),
        ("attempts", 200, b'{"uuid": "x"}', "the receiver's answer has no attempts"),
        ("replays", 200, b'{"jobs": []}', "the receiver's answer is not a list of jobs"),
        ("replay", 202, b"[]", "the receiver's answer is not a replay job: []"),
        ("replay", 500, b"", "500 Internal Server Error from http://receiver:8090/replays/a%2Fb"),
        ("page", 405, b'{"title": "Method Not Allowed", "detail": "use POST"}',
         "405 Method Not Allowed: use POST (is the receiver at http://receiver:8090 older"),
        ("page", 503, b'{"title": "Service Unavailable", "errors": [{"message": "down"}]}',
         "503 Service Unavailable ((body): down)"),
    ],
)  # fmt: skip
async def test_every_unexpected_answer_is_one_line(
    call: str, status: int, body: bytes, says: str
) -> None:
    calls: dict[str, Callable[[OpsClient], Awaitable[object]]] = {
        "page": lambda c: c.page(Filter()),
        "attempts": lambda c: c.attempts(SENT),
        "replays": lambda c: c.replays(),
        "replay": lambda c: c.replay("a/b"),
    }
    async with answering(status, body) as client:
        with pytest.raises(OpsError) as caught:
            await calls[call](client)
    assert says in str(caught.value)
    assert caught.value.status == (status if status >= 400 else None)
    assert "\n" not in str(caught.value)


def test_a_terminal_gets_the_bar() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(ops_cli.progress_for(Terminal()), BarProgress)
