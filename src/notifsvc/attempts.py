"""The attempt history: one row per answer a provider gave (or failed to give) to a send.

:class:`~notifsvc.delivery.DeliveryPolicy` builds the :class:`Attempt` rows of a pass and
returns them on its :class:`~notifsvc.delivery.Delivery`; the notificator writes them with
the pass's outcome (:meth:`notifsvc.db.store.Store.record`, one statement for the whole
flush), and ``GET /notification/{uuid}/attempts`` lists them, oldest first.

Numbering. A counted attempt (``sent``, ``transient``, ``permanent``) has the number it
spends, 1-based across passes (a pass that starts after ``prior`` attempts numbers its own
``prior + 1``, ``prior + 2``, ...) and ``seq`` 0. A ``throttled`` answer spends no attempt:
it has the number of the attempt it held back (attempts made so far + 1) and a ``seq`` of
its own, its start in Unix milliseconds (strictly increasing within a pass). The key
``(uuid, number, seq)`` is therefore unique, and the same for an attempt written twice (a
flush retried after an unknown outcome: ``ON CONFLICT DO NOTHING`` keeps one row); a pass
run again from the same ``prior`` (its batch redelivered after a crash) finds the numbers
of its counted attempts taken and keeps the first record of each. Rows sort by ``(number,
seq = 0, seq)``: the throttled answers that held an attempt back come before it.
"""

from __future__ import annotations

import uuid as uuid_mod
from enum import StrEnum
from typing import NamedTuple


class AttemptOutcome(StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"  # counted; may be retried
    PERMANENT = "permanent"  # counted; never retried
    THROTTLED = "throttled"  # not counted: the provider asked to slow down


class Attempt(NamedTuple):
    """One send attempt of one notification (see the module's numbering rule)."""

    uuid: uuid_mod.UUID
    number: int  # the attempt spent (1-based, across passes), or held back (throttled)
    seq: int  # 0 for a counted attempt; a throttled answer's start in Unix milliseconds
    outcome: AttemptOutcome
    started_at: float  # Unix seconds
    finished_at: float
    provider: str
    status: int | None = None  # the provider's status code (an HTTP status), if it answered
    message_id: str | None = None  # the provider's id for the message, where it gives one
    error_class: str | None = None  # e.g. TransientError, TimeoutError; None when sent
    error: str | None = None  # the channel's error text (secrets already scrubbed)

    @property
    def counted(self) -> bool:
        """Whether this attempt counts toward the notification's ``attempts``."""
        return self.outcome is not AttemptOutcome.THROTTLED

    @property
    def key(self) -> tuple[uuid_mod.UUID, int, int]:
        """Its primary key, also the order in which a batch writes (and locks) rows."""
        return self.uuid, self.number, self.seq
