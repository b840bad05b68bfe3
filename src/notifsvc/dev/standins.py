"""Local stand-ins for the providers of ``notifsvc dev``: the test fakes, run for a person.

A channel that cannot run with the settings given (no SMTP server, no provider credentials)
is pointed at its stand-in: the fake its channel class names (``Channel.fake``). So is each
provider its channel's ``*_PROVIDERS`` lists (``NOTIFSVC_SMS_PROVIDERS=twilio,vonage``) that
cannot run: every provider gets a fake of its own, to try failover by hand. The HTTP
fakes share one server with the outbox page and a webhook sink (any ``POST`` to another
path); the others (SMTP, the HTTP/2 APNs server) listen on ports of their own. A channel
with real settings keeps them. The webhook sink takes webhooks whatever the settings;
``NOTIFSVC_WEBHOOK_ALLOWED_HOSTS`` is set to this machine when it is empty.

Everything runs on an event loop of its own, in a thread, next to the synchronous runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import importlib
import logging
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from notifsvc import channels, providers
from notifsvc.channels.base import ProviderChoice
from notifsvc.channels.webhook import WebhookSettings
from notifsvc.config import Secret, Section, Settings, variables
from notifsvc.dev.fakes.base import ProviderFake
from notifsvc.dev.fakes.http import HttpFake
from notifsvc.dev.fakes.webhook import WebhookSink
from notifsvc.dev.outbox import KEEP, Outbox

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
#: Where the outbox is served unless the port is taken (as Mailpit's web page is).
OUTBOX_PORT = 8025


def wanted_providers(settings: Settings) -> dict[str, list[str]]:
    """Per channel that gets a stand-in, the providers that do: each listed provider (by
    default the channel's own) with a fake that cannot run with ``settings``, of channels
    not left out by ``NOTIFSVC_CHANNELS``."""
    listed = settings.channels
    out: dict[str, list[str]] = {}
    for name, cls in channels.REGISTRY.items():
        if name == "webhook" or (listed is not None and name not in listed):
            continue  # the webhook sink of the outbox is always there
        for provider in providers.provider_names(cls, settings):
            pcls = channels.PROVIDERS.get(provider)
            if pcls is not None and pcls.fake is not None and pcls.disabled_reason(settings):
                out.setdefault(name, []).append(provider)
    return out


def make_fake(name: str, keep: int | None = KEEP) -> ProviderFake:
    """A new instance of the fake of channel or provider ``name``, remembering the last
    ``keep`` captures (None: all). Raises ImportError when the fake needs the ``dev`` extra
    and it is missing."""
    owner = channels.REGISTRY.get(name) or channels.PROVIDERS[name]
    module, _, cls = (owner.fake or "").partition(":")
    fake: ProviderFake = getattr(importlib.import_module(module), cls)(keep=keep)
    return fake


def env_value(value: object) -> str:
    """A ``Settings`` value as its environment variable spells it ("" unsets)."""
    if value is None:
        return ""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, frozenset):
        return ",".join(sorted(value))
    return str(value)


class StandIns:
    """Start with :meth:`start`; :attr:`overrides` then holds the channel settings that
    point the channels at the stand-ins (:meth:`env` as environment variables)."""

    def __init__(
        self, settings: Settings, *, port: int = OUTBOX_PORT, log_path: Path | None = None
    ) -> None:
        """``log_path``: the log channel's file, shown in the outbox too."""
        self.settings = settings
        self.port = port
        self.wanted = wanted_providers(settings)
        self.channels = list(self.wanted)
        self.webhook = WebhookSink(keep=KEEP)
        self.fakes: dict[str, Any] = {}  # channel name -> its first provider's running fake
        self.provider_fakes: dict[str, Any] = {}  # provider name -> its running fake
        self.outbox = Outbox(log_path=log_path)
        self.overrides: list[Section] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The outbox page (and the base of the webhook sink)."""
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        """Every variable of each overridden section ("" unsets what the stand-in does not
        use, so that a half-configured provider's settings do not leak into it)."""
        return {
            name: env_value(getattr(section, f.name))
            for section in self.overrides
            for name, f in variables(type(section))
        }

    def start(self, timeout: float = 10.0) -> None:
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: every command
        self._thread = threading.Thread(target=self._run, name="dev-standins", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"the provider stand-ins did not start within {timeout:.0f}s")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10.0)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that called start()
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._make_fakes()
        runner = await self._serve()
        try:
            await self._start_others()
            self._point_channels()
            self._started.set()
            await self._stop.wait()
        finally:
            for fake in self._others():
                await fake.stop()
            await runner.cleanup()

    def _make_fakes(self) -> None:
        for name, names in self.wanted.items():
            for provider in names:
                try:
                    fake = make_fake(provider)
                except ImportError as exc:
                    log.warning("no %s stand-in: %s (pip install 'notifsvc[dev]')", provider, exc)
                    continue
                self.provider_fakes[provider] = fake
                self.fakes.setdefault(name, fake)
        self.channels = [name for name in self.channels if name in self.fakes]
        self.outbox.sources = [*self.provider_fakes.values(), self.webhook]

    def _http(self) -> list[HttpFake]:
        """The fakes served by the outbox's server, the webhook sink last (it takes every
        ``POST`` the others do not)."""
        fakes = [f for f in self.provider_fakes.values() if isinstance(f, HttpFake)]
        return [*fakes, self.webhook]

    def _others(self) -> list[Any]:
        return [f for f in self.provider_fakes.values() if not isinstance(f, HttpFake)]

    async def _serve(self) -> web.AppRunner:
        """One HTTP server: the outbox, the HTTP fakes, then the webhook sink."""
        app = web.Application()
        self.outbox.routes(app)
        for fake in self._http():
            fake.routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, HOST, self.port).start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or self.port == 0:
                await runner.cleanup()
                raise
            log.warning("port %d is taken (Mailpit?): the outbox gets another one", self.port)
            await web.TCPSite(runner, HOST, 0).start()
        self.port = runner.addresses[0][1]
        for fake in self._http():
            fake.serve_at(self.port)
        return runner

    async def _start_others(self) -> None:
        """The fakes with servers of their own (SMTP, HTTP/2)."""
        for fake in self._others():
            await fake.start()

    def _point_channels(self) -> None:
        self.overrides = [self._config(fake) for fake in self.provider_fakes.values()]
        webhook = self.settings.section(WebhookSettings)
        if not webhook.allowed_hosts:
            hosts = frozenset({HOST, "localhost"})
            self.overrides.append(WebhookSettings(allowed_hosts=hosts, secret=webhook.secret))
        elif HOST not in webhook.allowed_hosts:
            log.info(
                "webhooks to the sink (%s/...) need %s in NOTIFSVC_WEBHOOK_ALLOWED_HOSTS",
                self.url,
                HOST,
            )

    def _config(self, fake: Any) -> Section:
        """The fake's settings, keeping the channel's own choice of providers (a fake knows
        only where it listens)."""
        section: Section = fake.config()
        if not isinstance(section, ProviderChoice):
            return section
        own = self.settings.section(type(section))
        kept = {f.name: getattr(own, f.name) for f in dataclasses.fields(ProviderChoice)}
        return dataclasses.replace(section, **kept)

    def apply(self, settings: Settings) -> Settings:
        """``settings`` pointed at the stand-ins."""
        return settings.with_sections(*self.overrides)
