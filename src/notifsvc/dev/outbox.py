"""The outbox of ``notifsvc dev``: what each provider stand-in received, newest first.

``GET /`` is a page for a person (mail shown as text, everything HTML-escaped, refreshed
every few seconds); ``GET /outbox.json`` is the same list for scripts and tests. The log
channel's deliveries are read from its file (``NOTIFSVC_LOG_PATH``).
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import orjson
from aiohttp import web

from notifsvc.dev.fakes.captured import Delivery

#: Deliveries each stand-in remembers, and log-channel lines shown.
KEEP = 500
#: How much of the end of the log channel's file is read.
LOG_TAIL_BYTES = 256 * 1024


class Source(Protocol):
    """A provider fake: what it received, as the outbox shows it."""

    def deliveries(self) -> list[Delivery]: ...


def log_deliveries(path: Path, keep: int = KEEP) -> list[Delivery]:
    """The last ``keep`` lines of the log channel's file, oldest first."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - LOG_TAIL_BYTES))
            lines = f.read().splitlines()[-keep:]
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # the first, cut, line of the tail
        if isinstance(entry, dict):
            out.append(
                Delivery(
                    "log",
                    float(entry.get("time") or 0.0),
                    str(entry.get("to", "")),
                    str(entry.get("txt", "")),
                    entry.get("subject"),
                    entry.get("uuid"),
                )
            )
    return out


class Outbox:
    """Reads the captures of the stand-ins (``sources``) and of the log channel's file."""

    def __init__(self, sources: Sequence[Source] = (), *, log_path: Path | None = None) -> None:
        self.sources = list(sources)
        self.log_path = log_path

    def deliveries(self) -> list[Delivery]:
        """Everything captured, newest first."""
        found = [d for source in self.sources for d in source.deliveries()]
        if self.log_path is not None:
            found += log_deliveries(self.log_path)
        return sorted(found, key=lambda d: d.at, reverse=True)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._page)
        app.router.add_get("/outbox.json", self._json)

    async def _json(self, _request: web.Request) -> web.Response:
        body = {"deliveries": [d.as_dict() for d in self.deliveries()]}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _page(self, _request: web.Request) -> web.Response:
        return web.Response(text=render(self.deliveries()), content_type="text/html")


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
section{border:1px solid #ddd;border-radius:6px;margin:0 0 1em;padding:.6em 1em}
.ch{display:inline-block;min-width:5em;font-weight:600;text-transform:uppercase}
.meta{color:#666;font-size:12px}
pre{white-space:pre-wrap;background:#f7f7f7;padding:.6em;margin:.4em 0 0}
"""


def _section(d: Delivery) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(d.at))
    rows = [f"<b>{html.escape(k)}</b>: {html.escape(v)}" for k, v in d.details.items()]
    if d.uuid:
        rows.insert(0, f"<b>uuid</b>: {html.escape(d.uuid)}")
    subject = f"<div><b>{html.escape(d.subject)}</b></div>" if d.subject else ""
    return (
        f'<section><span class="ch">{html.escape(d.channel)}</span> {when} to '
        f"<b>{html.escape(d.to)}</b>{subject}"
        f'<div class="meta">{"<br>".join(rows)}</div><pre>{html.escape(d.text)}</pre></section>'
    )


def render(deliveries: list[Delivery]) -> str:
    """The outbox page: every field escaped, a mail's text as text."""
    counts: dict[str, int] = {}
    for d in deliveries:
        counts[d.channel] = counts.get(d.channel, 0) + 1
    summary = ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) or "nothing yet"
    body = "".join(_section(d) for d in deliveries)
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="3"><title>notifsvc dev outbox</title>'
        f"<style>{_STYLE}</style></head><body><h1>Outbox</h1>"
        f"<p>What the local provider stand-ins received, newest first: {summary}. "
        '<a href="/outbox.json">JSON</a></p>'
        f"{body}</body></html>"
    )
