"""The baseline the router is measured against: the naive, one-message-at-a-time design.

Per message: consume it, insert it in its own transaction (the same table and statement as
the router), forward it and wait for the broker's acknowledgement, commit its offset.
Same broker, same database and the same product wrappers (``Store``, ``Producer``,
``Consumer``) as the real router; only the batching is missing. It reads its settings from
``NOTIFSVC_*`` like a stage: ``python -m loadtest.naive_router``.
"""

from __future__ import annotations

import asyncio
import logging

from notifsvc import config, logs, topics
from notifsvc.config import Settings
from notifsvc.db.store import Store
from notifsvc.kafka import Consumer, Producer, Record
from notifsvc.model import InvalidNotification, Notification
from notifsvc.service import run_stage, serve

log = logging.getLogger(__name__)


class NaiveRouter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.dsn, max_connections=1)
        self.producer = Producer(settings, client_id="naive-router", linger_ms=0)
        self.consumer = Consumer(
            settings,
            group_id=settings.topic("naive-router"),
            topics=[topics.outstanding(settings)],
            client_id="naive-router",
        )
        self.handled = 0

    async def start(self) -> None:
        await self.store.start()
        await self.producer.start()
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()
        await self.store.stop()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            for record in await self.consumer.consume(1, 0.1):
                await self.handle(record)

    async def handle(self, record: Record) -> None:
        try:
            n = Notification.decode(record.value)
        except InvalidNotification as exc:
            log.warning("skipping a malformed message: %s", exc)
        else:
            if await self.store.insert([n]):  # one statement, one transaction
                topic = topics.channel(self.settings, n.channel)
                await self.producer.send(topic, n.encode(), key=n.key)
        await self.consumer.commit({(record.topic, record.partition): record.offset + 1})
        self.handled += 1


def main() -> int:
    settings = config.load()
    logs.setup(settings.log_level)
    serve(lambda stopping: run_stage(NaiveRouter(settings), stopping))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
