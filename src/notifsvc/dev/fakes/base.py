"""The provider-fake contract that the tests, ``notifsvc dev`` and the benchmarks rely on.

A fake is a real server speaking its provider's protocol on 127.0.0.1: a :class:`Service`
(``async with``, or ``start()``/``stop()`` with stop safe twice) that also points its
channel at itself (``config()``), names a recipient it delivers to (``recipient()``) and
lists what it received (``deliveries()``): a :class:`ProviderFake`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Protocol, Self

from notifsvc.dev.fakes.captured import Delivery


class Service(ABC):
    """Something that starts and stops, usable as an async context manager."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class ProviderFake(Protocol):
    """A channel's fake, as :attr:`notifsvc.channels.base.Channel.fake` names it."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, et: Any, e: Any, tb: Any) -> None: ...
    def config(self) -> Any: ...
    def recipient(self) -> str: ...
    def deliveries(self) -> list[Delivery]: ...
