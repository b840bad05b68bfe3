"""What the status-callback dispatcher keeps in the database: the callback URLs that are
gone (their receiver answered 410), in ``callback_endpoints_gone`` (migration 0005).

:class:`CallbackStore` is a :class:`~notifsvc.db.store.Store` (the same pool, short
retries and error classification: an outage is :class:`StoreUnavailable`, a missing table
:class:`StoreMisconfigured`) with these statements, one per batch at most.
"""

from __future__ import annotations

from collections.abc import Iterable

from notifsvc.db.store import Store

_GONE = "SELECT url FROM callback_endpoints_gone WHERE url = ANY($1::text[])"
#: Rows in URL order, the order concurrent dispatchers lock them in; a URL already gone
#: keeps the time it went.
_MARK_GONE = """
INSERT INTO callback_endpoints_gone (url)
SELECT * FROM unnest($1::text[])
ON CONFLICT (url) DO NOTHING
"""
_FORGET = "DELETE FROM callback_endpoints_gone WHERE url = ANY($1::text[]) RETURNING url"
_COUNT = "SELECT count(*) AS n FROM callback_endpoints_gone"


class CallbackStore(Store):
    """The dispatcher's statements over the store's pool (no I/O before :meth:`start`)."""

    schema_probes = ("SELECT url, gone_at FROM callback_endpoints_gone LIMIT 0",)

    async def gone(self, urls: Iterable[str]) -> set[str]:
        """Those of ``urls`` whose receiver answered 410 Gone."""
        wanted = sorted(set(urls))
        if not wanted:
            return set()
        return {r["url"] for r in await self._fetch(_GONE, wanted)}

    async def mark_gone(self, urls: Iterable[str]) -> None:
        """Remember that ``urls`` are gone (idempotent)."""
        ordered = sorted(set(urls))
        if ordered:
            await self._fetch(_MARK_GONE, ordered)

    async def forget(self, urls: Iterable[str]) -> set[str]:
        """Turn callbacks to ``urls`` on again; returns those that were gone."""
        ordered = sorted(set(urls))
        if not ordered:
            return set()
        return {r["url"] for r in await self._fetch(_FORGET, ordered)}

    async def count_gone(self) -> int:
        rows = await self._fetch(_COUNT)
        return int(rows[0]["n"])
