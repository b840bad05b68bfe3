"""Start-up checks of a consuming stage: what no retry can fix is said once, at start-up.

A missing topic or table is permanent for the stage (:class:`~notifsvc.errors.StageError`):
the stage refuses to start, naming what is missing and the command that fixes it, and the
process exits non-zero. A broker or database that is merely away is not: the stage starts
and its first batch waits for them, as during any outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from notifsvc import kafka
from notifsvc.config import Settings
from notifsvc.db.store import Store, StoreUnavailable

log = logging.getLogger(__name__)


async def check(settings: Settings, store: Store, topics: Iterable[str]) -> None:
    """Raise a stage error for missing topics or schema; only log an unreachable service."""
    await check_topics(settings, topics)
    try:
        await store.check_schema()
    except StoreUnavailable as exc:
        log.warning("cannot check the schema now (will wait for the database): %s", exc)


async def check_topics(settings: Settings, topics: Iterable[str]) -> None:
    """Raise a stage error for missing topics, or a broker that refuses our TLS or
    credentials (what the receiver checks: it needs no table to accept); only log a broker
    that is merely unreachable."""
    try:
        missing = await asyncio.to_thread(kafka.missing_topics, settings, list(topics))
    except kafka.KafkaUnavailable as exc:
        log.warning("cannot check the topics now (will wait for the broker): %s", exc)
    else:
        if missing:
            names = ", ".join(missing)
            raise kafka.KafkaStageError(f"missing topics: {names} (run `notifsvc topics create`)")
