"""Ordered providers per channel, each behind a circuit breaker, with one failover rule.

A channel whose settings are a :class:`~notifsvc.channels.base.ProviderChoice` (email, sms)
is sent through :class:`Failover`: the providers that ``NOTIFSVC_<CHANNEL>_PROVIDERS`` lists,
in that order. :class:`Failover` is itself a channel (the same contract), so the delivery
policy above it, with its one rate limiter per channel, does not change.

The failover rule, per notification:

- The first provider whose breaker lets the call through sends it.
- Only an error that proves the provider did not take the message
  (:attr:`~notifsvc.channels.base.DeliveryError.failover`: connection refused, DNS or TLS
  failure, HTTP 429 or 5xx on submit, an SMTP 4xx reply) passes it on to the next provider.
- Any other retriable error (a timeout after the request went out, a connection dropped
  while the provider had it) makes the notification *sticky*: it is retried on that
  provider only, never failed over, because the provider may already have sent it. A
  permanent error is the notification's answer; it is never failed over.
- When every breaker turns the call away, it raises
  :class:`~notifsvc.channels.base.Throttled` with ``retry_after`` = the time until the first
  breaker half-opens: the channel waits without spending an attempt.

Stickiness lives in the process (:data:`STICKY_MAX` notifications, the oldest forgotten
first): a retry taken up by another replica (after a rebalance or a restart) starts again
from the first provider. Breakers, too, are per process: each replica judges its providers
by what its own calls saw.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from typing import Any
from uuid import UUID

from notifsvc import metrics
from notifsvc.breaker import Breaker, Clock, Policy, State
from notifsvc.channels.base import (
    AnyChannel,
    Channel,
    DeliveryError,
    ProviderChoice,
    Receipt,
    Throttled,
)
from notifsvc.config import ConfigError, Settings
from notifsvc.model import FieldError, Notification

log = logging.getLogger(__name__)

#: Notifications remembered as sticky to a provider, per channel and process.
STICKY_MAX = 100_000
#: Pause asked for when every breaker is half-open and turned this call away.
PROBE_PAUSE = 1.0
#: Class attributes of a channel that state its validation rules (the receiver's fast path).
RULES = ("recipient_pattern", "subject_pattern", "max_subject_chars")


class Failover(Channel[Any]):
    """The providers of one channel in order; see the module's docstring."""

    def __init__(
        self, settings: Settings, providers: Sequence[AnyChannel], clock: Clock = time.monotonic
    ) -> None:
        super().__init__(settings)
        policy = self.config.policy() if isinstance(self.config, ProviderChoice) else Policy()
        self.providers = list(providers)
        self.breakers = {p.provider: Breaker(p.provider, policy, clock) for p in providers}
        for breaker in self.breakers.values():
            breaker.on_change = self._changed
        self._sticky: OrderedDict[UUID, AnyChannel] = OrderedDict()

    def validate_recipient(self, to: str) -> list[FieldError]:
        return self.providers[0].validate_recipient(to)

    def validate(self, notification: Notification) -> list[FieldError]:
        """What any of the providers refuses: a notification must suit all of them."""
        for provider in self.providers:
            errors = provider.validate(notification)
            if errors:
                return errors
        return []

    async def start(self) -> None:
        for provider in self.providers:
            await provider.start()
            self._changed(self.breakers[provider.provider], State.CLOSED)

    async def stop(self) -> None:
        for provider in self.providers:
            await provider.stop()

    def states(self) -> dict[str, State]:
        """Each provider's breaker state, in order."""
        return {name: breaker.state for name, breaker in self.breakers.items()}

    async def send(self, notification: Notification) -> Receipt | None:
        sticky = self._sticky.get(notification.uuid)
        if sticky is not None:
            return await self._sticky_send(sticky, notification)
        last: DeliveryError | None = None
        for provider in self.providers:
            if not self.breakers[provider.provider].allow():
                continue
            try:
                return await self._call(provider, notification)
            except DeliveryError as exc:
                if not exc.failover:
                    raise
                last = exc
                metrics.FAILOVERS.labels(self.name, provider.provider).inc()
                log.info(
                    "%s: %s did not take %s: %s",
                    self.name,
                    provider.provider,
                    notification.uuid,
                    exc,
                )
        if last is not None:
            raise last
        raise self._all_open()

    async def _sticky_send(self, provider: AnyChannel, n: Notification) -> Receipt | None:
        """A retry of a notification that ``provider`` may already have sent: only there."""
        breaker = self.breakers[provider.provider]
        if breaker.state is State.OPEN:  # no share-sampling: it has nowhere else to go
            error = Throttled(  # waits for the breaker without spending an attempt
                f"{provider.provider} may have sent it already and its circuit is open: "
                f"retried there later, never through another provider",
                retry_after=max(1.0, breaker.retry_after()),
            )
            error.provider = provider.provider
            raise error
        return await self._call(provider, n)

    async def _call(self, provider: AnyChannel, n: Notification) -> Receipt:
        breaker = self.breakers[provider.provider]
        try:
            receipt = await provider.send(n)
        except asyncio.CancelledError:
            # Cut off by the policy's send deadline (or a stop) while the provider had it.
            breaker.record(False)
            self._stick(n.uuid, provider)
            raise
        except DeliveryError as exc:
            exc.provider = provider.provider
            breaker.record(not exc.retriable)  # a permanent refusal: a healthy answer
            # Once it may have been taken (a timeout), it stays with this provider through
            # every retriable error after (a 503 on the retry proves nothing of the first).
            if exc.retriable and (not exc.failover or n.uuid in self._sticky):
                self._stick(n.uuid, provider)
            else:
                self._sticky.pop(n.uuid, None)
            raise
        breaker.record(True)
        self._sticky.pop(n.uuid, None)
        return replace(receipt or Receipt(), provider=provider.provider)

    def _stick(self, uuid: UUID, provider: AnyChannel) -> None:
        self._sticky[uuid] = provider
        self._sticky.move_to_end(uuid)
        while len(self._sticky) > STICKY_MAX:
            self._sticky.popitem(last=False)

    def _all_open(self) -> Throttled:
        waits = [b.retry_after() for b in self.breakers.values()]
        wait = min(waits) or PROBE_PAUSE
        names = ", ".join(self.breakers)
        return Throttled(
            f"every {self.name} provider's circuit is open ({names})", retry_after=wait
        )

    def _changed(self, breaker: Breaker, state: State) -> None:
        metrics.BREAKER_STATE.labels(self.name, breaker.name).set(int(state))


@cache
def failover_class(channel: type[AnyChannel]) -> type[Failover]:
    """The :class:`Failover` of ``channel`` (its primary class): its name, settings and the
    class attributes the stages read."""
    attrs = {
        "name": channel.name,
        "provider": "failover",
        "Config": channel.Config,
        "max_body_chars": channel.max_body_chars,
        "fake": channel.fake,
        "push": channel.push,
        "__doc__": f"The {channel.name} channel's providers, in order.",
    }
    for optional in RULES:  # what the receiver's fast path reads (every provider's agree)
        if hasattr(channel, optional):
            attrs[optional] = getattr(channel, optional)
    return type(f"{channel.__name__}Failover", (Failover,), attrs)


def provider_names(channel: type[AnyChannel], settings: Settings) -> tuple[str, ...]:
    """The providers ``channel`` sends through, in order (just its own by default)."""
    section = settings.section(channel.Config)
    if isinstance(section, ProviderChoice) and section.provider_names:
        return section.provider_names
    return (channel.provider,)


def unusable(
    channel: type[AnyChannel], settings: Settings, registry: dict[str, type[AnyChannel]]
) -> list[str]:
    """Why the providers listed for ``channel`` cannot run, each naming it: start-up errors,
    since an operator who lists a provider wants it, not a silent skip. (Just the channel's
    own provider, unconfigured, is no error: the channel is then off, as ever.)"""
    section = settings.section(channel.Config)
    if not isinstance(section, ProviderChoice):
        return []
    variable, names = section.env_name("providers"), provider_names(channel, settings)
    problems = []
    for name in names:
        cls = registry.get(name)
        if cls is None or cls.name != channel.name:
            problems.append(f"{variable} names {name!r}, which is not a {channel.name} provider")
        elif names != (channel.provider,):
            reason = cls.disabled_reason(settings)
            if reason is not None:
                problems.append(f"{variable} names {name!r}, which cannot run: {reason}")
    return problems


def disabled_reason(
    channel: type[AnyChannel], settings: Settings, registry: dict[str, type[AnyChannel]]
) -> str | None:
    """Why ``channel`` cannot run with its providers, or None; raises
    :class:`~notifsvc.config.ConfigError` when a listed provider cannot run."""
    problems = unusable(channel, settings, registry)
    if problems:
        raise ConfigError(problems)
    if provider_names(channel, settings) == (channel.provider,):
        return channel.disabled_reason(settings)
    return None


def build(
    channel: type[AnyChannel],
    settings: Settings,
    registry: dict[str, type[AnyChannel]],
    clock: Clock = time.monotonic,
) -> AnyChannel:
    """The channel object the stages use: ``channel`` itself when it has no choice of
    providers, else a :class:`Failover` over the listed ones (no I/O yet)."""
    if not issubclass(channel.Config, ProviderChoice):
        return channel(settings)
    names = provider_names(channel, settings)
    return failover_class(channel)(settings, [registry[n](settings) for n in names], clock)
