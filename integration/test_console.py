"""The web console: its files and ``GET /stats`` over HTTP, then the console itself in a real
headless Chromium (Playwright for Python driving Debian's ``chromium``), against the real
receiver, router and notificators on the real broker and database.

The browser tests are skipped, saying what is missing, where no Chromium (or no
``playwright`` package) is installed: ``make test`` installs both where it can (see
mk/browser.mk). ``CONSOLE_SCREENSHOT=docs/console.png`` makes the screenshot test write the
README's picture there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html.parser
import os
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema_rs
import orjson
import pytest
from aiohttp import web
from playwright.async_api import BrowserContext, Locator, Page, async_playwright, expect
from yarl import URL

from integration import helpers
from integration.helpers import eventually, notification, running
from notifsvc import topics
from notifsvc.api import console
from notifsvc.api.console import BrokerFigures, BrokerPart, Stats
from notifsvc.channels.log import LogChannel, LogSettings
from notifsvc.channels.webhook import WebhookChannel
from notifsvc.config import Secret, Settings
from notifsvc.db.store import Store
from notifsvc.kafka import Producer
from notifsvc.notificator import Notificator
from notifsvc.process import free_port
from notifsvc.receiver import ReceiverServer
from notifsvc.router import Router

KEY = "k-console"
#: Seconds a browser expectation may take (a send goes through two consumers).
WITHIN_MS = 45_000
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def base_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.http_port}"


# ------------------------------------------------------------------ the files, over HTTP


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


async def test_console_files_are_served_with_a_strict_policy(api: aiohttp.ClientSession) -> None:
    async with api.get("/console") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        page = await resp.text()
        headers = resp.headers
    assert headers["Content-Security-Policy"] == console.CSP
    assert "default-src 'self'" in console.CSP and "unsafe" not in console.CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-cache"
    parser = _Tags()
    parser.feed(page)
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts and all(str(a.get("src")).startswith("/console/") for a in scripts)
    inline = [
        (t, n) for t, attrs in parser.tags for n in attrs if n.startswith("on") or n == "style"
    ]
    assert inline == []
    async with api.get("/console", headers={"If-None-Match": headers["ETag"]}) as resp:
        assert resp.status == 304
    async with api.get("/console/") as resp:
        assert resp.status == 200 and await resp.text() == page
    for name, kind in console.ASSETS.items():
        async with api.get(f"/console/{name}") as resp:
            assert resp.status == 200, name
            assert resp.content_type == kind
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            body = await resp.text()
        # Every field reaches the page as text: no markup is ever built from strings.
        for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert risky not in body, (name, risky)


#: Names the console does not have, and attempts to reach outside its files.
NOT_CONSOLE_FILES = (
    "/console/nope.js",
    "/console/index.htm",
    "/console/..%2Fconsole.py",
    "/console/%2e%2e%2fapi%2fconsole.py",
    "/console/..%2F..%2F..%2Fpyproject.toml",
    "/console/%2E%2E/%2E%2E/pyproject.toml",
    "/console/console.js%00",
    "/console/console.js/",
    "/console/.",
    "/console/%5C..%5Cconsole.py",
)


async def test_unknown_console_files_and_traversal_are_404(
    api: aiohttp.ClientSession, settings: Settings
) -> None:
    for path in NOT_CONSOLE_FILES:
        url = URL(f"{base_url(settings)}{path}", encoded=True)
        async with api.get(url) as resp:
            assert resp.status == 404, path
            body = await resp.read()
        assert b"import" not in body and b"[project]" not in body, path


async def test_stats_counts_sends_and_reads_the_broker(
    api: aiohttp.ClientSession, settings: Settings, store: Store
) -> None:
    async with api.get("/stats") as resp:
        assert resp.status == 200
        empty = await resp.json()
    assert empty["counts"] == {} and empty["sent_last_minute"] == {}
    assert empty["dlq"] == {"messages": 0}
    producer = Producer(settings, client_id="test-dlq")
    await producer.start()
    try:
        await producer.send(topics.dlq(settings), b"dead", key=b"k")
    finally:
        await producer.stop()
    async with running(Router(settings)), running(Notificator(settings, LogChannel(settings))):
        bodies = [notification() for _ in range(3)]
        for body in bodies:
            async with api.post("/notification", json=body) as resp:
                assert resp.status == 202

        async def settled() -> dict[str, Any]:
            async with api.get("/stats") as resp:
                figures: dict[str, Any] = await resp.json()
            sent = figures["counts"].get("log", {}).get("sent") == 3
            read = figures["dlq"] == {"messages": 1}  # the broker part is read every 5 s
            lag = figures["lag"] or {}  # the router commits after it marked the rows
            caught_up = lag.get(topics.router_group(settings)) == 0
            return figures if sent and read and caught_up else {}

        stats = await eventually(settled)
    assert stats["counts"]["log"]["failed"] == 0
    assert stats["sent_last_minute"] == {"log": 3}
    assert stats["dlq"] == {"messages": 1}
    assert stats["lag"] is not None and stats["lag"].get(topics.router_group(settings)) == 0
    async with api.get("/openapi.json") as resp:
        doc = await resp.json()
    schema = doc["paths"]["/stats"]["get"]["responses"]["200"]["content"]["application/json"]
    jsonschema_rs.validator_for(schema["schema"]).validate(stats)


async def test_stats_part_is_null_when_the_database_is_down(settings: Settings) -> None:
    gone = dataclasses.replace(
        settings, database_url=Secret(f"postgresql://u:p@127.0.0.1:{free_port()}/gone")
    )
    async with (
        running(ReceiverServer(gone)),
        aiohttp.ClientSession(base_url(gone)) as api,
        api.get("/stats") as resp,
    ):
        assert resp.status == 200
        stats = await resp.json()
    assert stats["counts"] is None and stats["sent_last_minute"] is None
    assert stats["dlq"] == {"messages": 0}  # the broker part still answers


async def test_stats_part_is_null_when_the_broker_is_down(settings: Settings, store: Store) -> None:
    away = dataclasses.replace(settings, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    stats = await Stats(away, store).read()
    assert stats["dlq"] is None and stats["lag"] is None
    assert stats["counts"] == {}  # the database part still answers


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_slow_broker_is_asked_once_and_waited_for_a_bounded_time(
    settings: Settings, store: Store
) -> None:
    release = threading.Event()
    calls: list[Settings] = []

    def stuck(s: Settings) -> BrokerPart:
        calls.append(s)
        release.wait(30)
        return 7, {"g": 1}

    clock = Clock()
    broker = BrokerFigures(settings, stuck, clock=clock, timeout=0.5)
    stats = Stats(settings, store, clock=clock, broker=broker)
    try:
        first, second = await asyncio.gather(stats.read(), stats.read())
        assert first is second and first["dlq"] is None and first["counts"] == {}
        clock.now += 10  # a later request: the read under way is awaited, not started again
        assert (await stats.read())["dlq"] is None
        assert len(calls) == 1
        release.set()

        async def answered() -> bool:
            clock.now += 1.1
            return bool((await stats.read())["dlq"] == {"messages": 7})

        await eventually(answered)
    finally:
        release.set()
        await stats.stop()


async def test_the_broker_is_read_at_most_every_few_seconds(
    settings: Settings, store: Store
) -> None:
    clock = Clock()
    reads: list[int] = []

    def count(_s: Settings) -> BrokerPart:
        reads.append(1)
        return len(reads), {}

    broker = BrokerFigures(settings, count, clock=clock, every=5, fresh=15)
    stats = Stats(settings, store, clock=clock, broker=broker, max_age=1.0)
    first = await stats.read()
    assert first["dlq"] == {"messages": 1}  # nothing read yet: the request waited for it
    clock.now += 0.5
    assert await stats.read() is first  # one collection per second, whoever asks
    clock.now += 0.6
    later = await stats.read()
    assert later is not first and later["dlq"] == {"messages": 1} and len(reads) == 1
    clock.now = 5.2  # a read starts; meanwhile the last figures, still fresh, are served
    assert (await stats.read())["dlq"] == {"messages": 1}

    async def read_again() -> bool:
        clock.now += 1.1
        return bool((await stats.read())["dlq"] == {"messages": 2})

    await eventually(read_again)
    clock.now += 60  # too old to serve: the request waits for a new read
    assert (await stats.read())["dlq"] == {"messages": len(reads)} and len(reads) == 3


async def test_stats_need_the_key_and_the_console_shell_does_not(settings: Settings) -> None:
    keyed = dataclasses.replace(settings, api_keys=(Secret(KEY),))
    async with running(ReceiverServer(keyed)), aiohttp.ClientSession(base_url(keyed)) as api:
        async with api.get("/console") as resp:
            assert resp.status == 200
        async with api.get("/console/console.js") as resp:
            assert resp.status == 200
        async with api.get("/stats") as resp:
            assert resp.status == 401
        headers = {"Authorization": f"Bearer {KEY}"}
        async with api.get("/stats", headers=headers) as resp:
            assert resp.status == 200


# ------------------------------------------------------------------ a real browser


def chromium_path() -> str | None:
    """Debian's chromium (or ``CHROMIUM``), when installed."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", "chromium"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """A headless Chromium with a fresh profile; skipped, saying why, without one."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "no Chromium: install Debian's chromium (make browser) to run the console tests"
        )
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 900},
        )
        try:
            yield context
        finally:
            await context.close()


class Watched:
    """A page whose dialogs and script errors are recorded (none may happen)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()


async def open_console(context: BrowserContext, settings: Settings) -> Watched:
    watched = Watched(await context.new_page())
    await watched.page.goto(f"{base_url(settings)}/console")
    await expect(watched.page.locator("#live")).to_contain_text("live", timeout=WITHIN_MS)
    return watched


class FlakyHook:
    """A webhook receiver that refuses for good (HTTP 400, quoting the notification's text)
    until told to accept; counts what it accepted."""

    def __init__(self) -> None:
        self.accepting = False
        self.accepted: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if not self.accepting:
            return web.Response(status=400, text=f"refused: {body.get('txt')}")
        self.accepted.append(request.headers["Idempotency-Key"])
        return web.json_response({"ok": True})

    async def __aenter__(self) -> FlakyHook:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclasses.dataclass
class Pipeline:
    settings: Settings
    api: aiohttp.ClientSession
    store: Store
    hook: FlakyHook
    stack: AsyncExitStack

    async def post(self, body: dict[str, object]) -> str:
        async with self.api.post("/notification", json=body) as resp:
            assert resp.status == 202, await resp.text()
        return str(body["uuid"])

    async def webhook(self, txt: str = "deploy finished") -> str:
        return await self.post(notification("webhook", to=self.hook.url, txt=txt))

    async def state_is(self, uid: str, *states: str) -> None:
        async def reached() -> bool:
            row = await self.store.get(uuid.UUID(uid))
            return row is not None and row["state"] in states

        await eventually(reached)

    async def start_log_notificator(self) -> None:
        """Until this, the log channel's notifications wait, forwarded."""
        notificator = Notificator(self.settings, LogChannel(self.settings))
        await self.stack.enter_async_context(running(notificator))


@pytest.fixture
async def pipeline(settings: Settings, store: Store) -> AsyncIterator[Pipeline]:
    """Receiver, router and the webhook notificator (to a flaky receiver); the log channel's
    notificator starts when the test says so."""
    async with AsyncExitStack() as stack:
        hook = await stack.enter_async_context(FlakyHook())
        await stack.enter_async_context(running(ReceiverServer(settings)))
        api = await stack.enter_async_context(aiohttp.ClientSession(base_url(settings)))
        await stack.enter_async_context(running(Router(settings)))
        await stack.enter_async_context(running(Notificator(settings, WebhookChannel(settings))))
        yield Pipeline(settings, api, store, hook, stack)


def row(page: Page, uid: str, table: str = "#list") -> Locator:
    return page.locator(f'{table} tr[data-uuid="{uid}"]')


async def show_failed(page: Page) -> None:
    await page.select_option("#filters select[name=state]", "failed")
    await page.click("#apply")


async def test_filter_to_failed_open_one_retry_it_and_see_it_sent(
    browser: BrowserContext, pipeline: Pipeline
) -> None:
    failed = await pipeline.webhook()
    await pipeline.state_is(failed, "failed")
    pipeline.hook.accepting = True  # the provider recovered
    sent = await pipeline.webhook()
    await pipeline.state_is(sent, "sent")
    watched = await open_console(browser, pipeline.settings)
    page = watched.page
    counts = page.locator('#counts tr[data-channel="webhook"]')
    await expect(counts.locator("td.state-failed")).to_have_text("1", timeout=WITHIN_MS)
    await show_failed(page)
    await expect(row(page, failed)).to_be_visible(timeout=WITHIN_MS)
    await expect(row(page, sent)).to_have_count(0)
    await row(page, failed).click()
    await expect(page.locator("#detail-state")).to_have_text("failed", timeout=WITHIN_MS)
    await expect(page.locator("#timeline")).to_contain_text("failed")
    attempts = page.locator("#attempts tbody tr.attempt")
    await expect(attempts).to_have_count(1)
    await expect(page.locator("#attempts tbody tr.attempt-error")).to_contain_text("HTTP 400")
    await page.click("#retry")
    await expect(page.locator("#action-answer")).to_contain_text("202", timeout=WITHIN_MS)
    await expect(page.locator("#detail-state")).to_have_text("sent", timeout=WITHIN_MS)
    await expect(page.locator("#timeline")).to_contain_text("sent")
    await expect(attempts).to_have_count(2)  # the history keeps the attempt before the retry
    await expect(attempts.last).to_contain_text("sent")
    await expect(row(page, failed).locator(".badge")).to_have_text("sent")
    await expect(counts.locator("td.state-sent")).to_have_text("2", timeout=WITHIN_MS)
    await page.click("#retry")  # sent now: the server says no, and the console shows it
    await expect(page.locator("#action-answer")).to_contain_text("409", timeout=WITHIN_MS)
    assert sorted(pipeline.hook.accepted) == sorted([failed, sent])
    assert watched.errors == [] and watched.dialogs == []


async def test_replay_the_failed_notifications_of_a_channel(
    browser: BrowserContext, pipeline: Pipeline
) -> None:
    failed = [await pipeline.webhook() for _ in range(3)]
    for uid in failed:
        await pipeline.state_is(uid, "failed")
    pipeline.hook.accepting = True
    watched = await open_console(browser, pipeline.settings)
    page = watched.page
    await page.click(".tab[data-tab=dlq]")
    await expect(page.locator("#dlq-list tbody tr")).to_have_count(3, timeout=WITHIN_MS)
    await page.click(".tab[data-tab=replays]")
    await page.select_option("#replay-form select[name=channel]", "webhook")
    await page.click("#replay-start")
    await expect(page.locator("#replay-answer")).to_contain_text("202", timeout=WITHIN_MS)
    job = page.locator("#jobs tbody tr").first
    await expect(job.locator(".badge")).to_have_text("done", timeout=WITHIN_MS)
    await expect(job.locator("td.requeued")).to_have_text("3")
    for uid in failed:
        await pipeline.state_is(uid, "sent")
    assert sorted(pipeline.hook.accepted) == sorted(failed)
    assert watched.errors == []


async def test_text_with_markup_is_shown_as_text_and_runs_nothing(
    browser: BrowserContext, pipeline: Pipeline
) -> None:
    payload = (
        '<img src=x onerror="window.__owned=1"><script>window.__owned=2</script>'
        '<b id="injected">bold</b>"><svg onload="alert(3)">'
    )
    uid = await pipeline.webhook(txt=payload)
    await pipeline.state_is(uid, "failed")
    watched = await open_console(browser, pipeline.settings)
    page = watched.page
    await show_failed(page)
    cell = row(page, uid).locator("td.error")
    await expect(cell).to_contain_text('refused: <img src=x onerror="', timeout=WITHIN_MS)
    assert payload in str(await cell.get_attribute("title"))
    await row(page, uid).click()
    fields = page.locator("#detail-fields")
    await expect(fields.locator('dd[data-field="txt"]')).to_have_text(payload, timeout=WITHIN_MS)
    await expect(fields.locator('dd[data-field="last_error"]')).to_contain_text(payload)
    await page.click(".tab[data-tab=dlq]")
    dead = row(page, uid, "#dlq-list").locator("td.error")
    await expect(dead).to_contain_text("<img src=x", timeout=WITHIN_MS)
    for selector in ("img", "script:not([src])", "#injected", "svg:not(.line-chart)"):
        assert await page.locator(f"body {selector}").count() == 0, selector
    assert await page.evaluate("window.__owned") is None
    assert watched.dialogs == [] and watched.errors == []


async def test_cancel_from_the_detail_view(browser: BrowserContext, pipeline: Pipeline) -> None:
    waiting = await pipeline.post(notification(txt="cancel me"))
    later = await pipeline.post(notification(txt="send me"))
    await pipeline.state_is(waiting, "forwarded")
    watched = await open_console(browser, pipeline.settings)
    page = watched.page
    await row(page, waiting).click()
    await expect(page.locator("#detail-state")).to_have_text("forwarded", timeout=WITHIN_MS)
    await page.click("#cancel")
    await page.click("#cancel-confirm")
    await expect(page.locator("#action-answer")).to_contain_text("200", timeout=WITHIN_MS)
    await expect(page.locator("#detail-state")).to_have_text("canceled")
    await expect(page.locator("#timeline")).to_contain_text("canceled")
    await expect(row(page, waiting).locator(".badge")).to_have_text("canceled")
    await pipeline.start_log_notificator()
    await pipeline.state_is(later, "sent")
    await consumed(pipeline)  # the canceled one's message too: it was read, and skipped
    assert await pipeline.store.get(uuid.UUID(waiting)) is not None
    assert deliveries(pipeline.settings)[waiting] == 0
    assert (await pipeline.store.get(uuid.UUID(waiting)) or {})["state"] == "canceled"
    await row(page, later).click()
    await expect(page.locator("#detail-state")).to_have_text("sent", timeout=WITHIN_MS)
    await page.click("#cancel")
    await page.click("#cancel-confirm")
    await expect(page.locator("#action-answer")).to_contain_text("409", timeout=WITHIN_MS)
    await expect(page.locator("#detail-state")).to_have_text("sent")
    assert watched.errors == []


def deliveries(settings: Settings) -> Counter[str]:
    path = settings.section(LogSettings).path
    assert path is not None
    return helpers.deliveries(path)


async def consumed(pipeline: Pipeline) -> None:
    """Until every lane of the log channel's notificator has nothing left to read."""
    groups = {topics.notificator_group(pipeline.settings, "log", lane) for lane in topics.LANES}

    async def caught_up() -> bool:
        async with pipeline.api.get("/stats") as resp:
            lag = (await resp.json())["lag"] or {}
        return all(lag.get(g, 0) == 0 for g in groups) and bool(groups & lag.keys())

    await eventually(caught_up)


async def test_the_console_asks_for_an_api_key_when_keys_are_on(
    browser: BrowserContext, settings: Settings
) -> None:
    keyed = dataclasses.replace(settings, api_keys=(Secret(KEY),))
    async with running(ReceiverServer(keyed)):
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{base_url(keyed)}/console")
        prompt = page.locator("#key-prompt")
        await expect(prompt).to_be_visible(timeout=WITHIN_MS)
        await expect(prompt).to_contain_text("401")
        await expect(page.locator("#api-key")).to_be_focused()
        await page.fill("#api-key", "not-the-key")
        await page.click("#key-form button[type=submit]")
        await expect(prompt).to_be_visible(timeout=WITHIN_MS)
        await page.fill("#api-key", KEY)
        await page.click("#key-form button[type=submit]")
        await expect(page.locator("#live")).to_contain_text("live ·", timeout=WITHIN_MS)
        await expect(page.locator("#list-status")).to_have_text(
            "no notification matches", timeout=WITHIN_MS
        )
        await expect(prompt).to_be_hidden()
        await page.reload()  # kept for the tab's life
        await expect(page.locator("#live")).to_contain_text("live ·", timeout=WITHIN_MS)
        await expect(prompt).to_be_hidden()
        assert errors == []


async def test_screenshot_of_the_list(
    browser: BrowserContext, pipeline: Pipeline, tmp_path: Path
) -> None:
    """The README's picture: notifications in several states, the live figures and charts."""
    watched = await open_console(browser, pipeline.settings)
    page = watched.page
    waiting = [await pipeline.post(notification(txt=f"nightly report {i}")) for i in range(3)]
    failed = [await pipeline.webhook(txt="order shipped") for _ in range(2)]
    for uid in failed:
        await pipeline.state_is(uid, "failed")
    pipeline.hook.accepting = True
    for _ in range(3):  # sends spread over a few samples of /stats: a line, not a dot
        sent = [await pipeline.webhook(txt="invoice paid") for _ in range(4)]
        for uid in sent:
            await pipeline.state_is(uid, "sent")
        await expect(page.locator("#live")).not_to_have_text(
            await live_text(page), timeout=WITHIN_MS
        )
    await pipeline.state_is(waiting[0], "forwarded")
    async with pipeline.api.delete(f"/notification/{waiting[0]}") as resp:
        assert resp.status == 200, await resp.text()
    await page.click("#apply")
    await expect(page.locator("#list tbody tr")).to_have_count(17, timeout=WITHIN_MS)
    await expect(page.locator("#chart-throughput polyline")).to_have_count(1, timeout=WITHIN_MS)
    await expect(page.locator('#counts tr[data-channel="log"] td.state-canceled')).to_have_text(
        "1", timeout=WITHIN_MS
    )
    target = Path(os.environ.get("CONSOLE_SCREENSHOT") or tmp_path / "console.png")
    await page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
    assert watched.errors == []


async def live_text(page: Page) -> str:
    return await page.locator("#live").inner_text()
