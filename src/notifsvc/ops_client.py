"""A small typed client of the receiver's operator endpoints (list, cancel, retry, replay).

The operator commands of ``notifsvc`` (:mod:`notifsvc.ops_cli`) are written against this
client, never against raw HTTP, so that every way a request can fail becomes one
:class:`OpsError` whose message is a single line a person can act on: the server's
problem+json (title, detail, field errors), or which URL could not be reached and why.
"""

from __future__ import annotations

import re
import uuid as uuid_mod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import httpx

from notifsvc.config import Secret

#: Seconds to wait for any one answer of the receiver.
TIMEOUT: Final = 10.0
#: Most characters of a non-problem error body quoted in a message.
SNIPPET: Final = 200
#: The filters ``POST /replays`` takes (it replays failed notifications only).
REPLAY_FILTERS: Final = frozenset({"channel", "since", "until", "reason"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


class OpsError(Exception):
    """A request failed; ``str()`` is one line naming the problem. ``status`` is the HTTP
    status when the receiver answered (None when it could not be reached)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def one_line(text: str) -> str:
    """``text`` with every control character (newlines, terminal escapes) made harmless:
    error bodies and notification fields are other people's input."""
    return _CONTROL.sub(" ", text).strip()


@dataclass(frozen=True)
class Filter:
    """The filters of ``GET /notifications`` (None: not filtered)."""

    state: str | None = None
    channel: str | None = None
    priority: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def params(self) -> dict[str, str]:
        out = {k: v for k, v in _fields(self).items() if v is not None}
        return {k: v.isoformat() if isinstance(v, datetime) else str(v) for k, v in out.items()}


def _fields(f: Filter) -> dict[str, object]:
    return {k: getattr(f, k) for k in Filter.__dataclass_fields__}


@dataclass(frozen=True)
class Page:
    """One page of ``GET /notifications``; ``next_cursor`` is None on the last."""

    items: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class Job:
    """A replay job as ``GET /replays/{id}`` shows it."""

    id: str
    state: str
    filter: dict[str, Any]
    matched: int
    requeued: int
    skipped: int
    created_at: str
    finished_at: str | None

    @property
    def done(self) -> bool:
        return self.state == "done"

    @classmethod
    def of(cls, data: object) -> Job:
        """The job in an answer; :class:`OpsError` when the answer is not one."""
        if not isinstance(data, dict):
            raise OpsError(f"the receiver's answer is not a replay job: {_snippet(data)}")
        try:
            job = cls(
                id=str(data["id"]),
                state=str(data["state"]),
                filter=dict(data.get("filter") or {}),
                matched=_count(data["matched"]),
                requeued=_count(data["requeued"]),
                skipped=_count(data["skipped"]),
                created_at=str(data.get("created_at", "")),
                finished_at=None if data.get("finished_at") is None else str(data["finished_at"]),
            )
        except (KeyError, TypeError, ValueError):
            raise OpsError(f"the receiver's answer is not a replay job: {_snippet(data)}") from None
        return job


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(value)
    return value


def _snippet(data: object) -> str:
    text = one_line(str(data))
    return text[:SNIPPET] + ("..." if len(text) > SNIPPET else "")


class OpsClient:
    """The operator endpoints of one receiver. Use it as ``async with OpsClient(...)``;
    ``transport`` lets a test route the requests elsewhere."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret | None = None,
        *,
        timeout: float = TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        headers = {"Accept": "application/json, application/problem+json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key.reveal()}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> OpsClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the connections; safe to call twice."""
        await self._http.aclose()

    async def page(
        self, flt: Filter, *, limit: int | None = None, cursor: str | None = None
    ) -> Page:
        """One page of notifications matching ``flt``, newest first."""
        params = flt.params()
        if limit is not None:
            params["limit"] = str(limit)
        if cursor is not None:
            params["cursor"] = cursor
        data = _object(await self._call("GET", "/notifications", params=params))
        items, cursor = data.get("items"), data.get("next_cursor")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise OpsError(f"the receiver's answer is not a page: {_snippet(data)}")
        if cursor is not None and not isinstance(cursor, str):
            raise OpsError(f"the receiver's answer has a malformed cursor: {_snippet(cursor)}")
        return Page(items, cursor)

    async def pages(
        self, flt: Filter, *, limit: int | None = None, cursor: str | None = None
    ) -> AsyncIterator[Page]:
        """Every page, following ``next_cursor`` until the last."""
        while True:
            page = await self.page(flt, limit=limit, cursor=cursor)
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get(self, uid: uuid_mod.UUID) -> dict[str, Any]:
        """The state of one notification (``GET /notification/{uuid}``)."""
        return _object(await self._call("GET", f"/notification/{uid}"))

    async def attempts(self, uid: uuid_mod.UUID) -> list[dict[str, Any]]:
        """Every send attempt of one notification, oldest first."""
        data = _object(await self._call("GET", f"/notification/{uid}/attempts"))
        attempts = data.get("attempts")
        if not isinstance(attempts, list):
            raise OpsError(f"the receiver's answer has no attempts: {_snippet(data)}")
        return [a for a in attempts if isinstance(a, dict)]

    async def cancel(self, uid: uuid_mod.UUID) -> dict[str, Any]:
        """Cancel one notification not sent yet; its state after."""
        return _object(await self._call("DELETE", f"/notification/{uid}"))

    async def retry(self, uid: uuid_mod.UUID) -> dict[str, Any]:
        """Send one failed notification again; its state after."""
        return _object(await self._call("POST", f"/notification/{uid}/retry"))

    async def start_replay(self, flt: Filter) -> Job:
        """Start a replay job of the failed notifications matching ``flt``."""
        body = {k: v for k, v in flt.params().items() if k in REPLAY_FILTERS}
        return Job.of(await self._call("POST", "/replays", json=body))

    async def replay(self, job_id: str) -> Job:
        return Job.of(await self._call("GET", f"/replays/{quote(job_id, safe='')}"))

    async def replays(self) -> list[Job]:
        """The latest replay jobs, newest first."""
        data = _object(await self._call("GET", "/replays"))
        items = data.get("items")
        if not isinstance(items, list):
            raise OpsError(f"the receiver's answer is not a list of jobs: {_snippet(data)}")
        return [Job.of(item) for item in items]

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, str] | None = None,
    ) -> Any:
        """The JSON of a 2xx answer; anything else is an :class:`OpsError`."""
        try:
            resp = await self._http.request(method, path, params=params, json=json)
        except httpx.TimeoutException:
            detail = f"no answer within {self._timeout:g} s"
            raise OpsError(f"{detail} from the receiver at {self.base_url}") from None
        except httpx.TransportError as exc:
            raise OpsError(self._unreachable(exc)) from None
        if not resp.is_success:
            raise OpsError(describe(resp, self.base_url), status=resp.status_code)
        try:
            return resp.json()
        except ValueError:
            url = resp.request.url
            raise OpsError(f"{url} answered {resp.status_code} without JSON") from None

    def _unreachable(self, exc: httpx.TransportError) -> str:
        why = one_line(str(exc)) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            return (
                f"cannot connect to the receiver at {self.base_url} ({why}); "
                "is it running there? (set NOTIFSVC_API_URL)"
            )
        return f"lost the connection to the receiver at {self.base_url} ({why})"


def _object(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise OpsError(f"the receiver's answer is not a JSON object: {_snippet(data)}")
    return data


def describe(resp: httpx.Response, base_url: str) -> str:
    """One line for an error answer: ``<status> <title>: <detail> (<field>: <message>...)``
    from a problem+json body, else the status and the start of the body."""
    status = resp.status_code
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not ({"title", "detail"} & set(body)):
        text = _snippet(resp.text) if resp.text.strip() else "(empty body)"
        return f"{status} {resp.reason_phrase} from {resp.request.url}: {text}"
    title = one_line(str(body.get("title") or resp.reason_phrase))
    line = f"{status} {title}"
    detail = one_line(str(body.get("detail") or ""))
    if detail:
        line += f": {detail}"
    fields = _field_errors(body.get("errors"))
    if fields:
        line += f" ({fields})"
    state = body.get("state")
    if isinstance(state, str) and state not in detail:
        line += f" [state: {one_line(state)}]"
    return line + _hint(status, base_url)


def _field_errors(errors: object) -> str:
    if not isinstance(errors, list):
        return ""
    parts = [
        one_line(f"{e.get('field') or '(body)'}: {e.get('message', '')}")
        for e in errors
        if isinstance(e, dict)
    ]
    return "; ".join(parts)


def _hint(status: int, base_url: str) -> str:
    if status == 401:
        return " (set NOTIFSVC_API_KEY or NOTIFSVC_API_KEY_FILE)"
    if status == 405:
        return f" (is the receiver at {base_url} older than this command?)"
    return ""
