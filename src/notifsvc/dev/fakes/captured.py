"""What a provider fake received, in one shape for the outbox of ``notifsvc dev``.

Each fake has ``deliveries()``: its captures as :class:`Delivery` values, so that the outbox
shows every channel's fake without knowing its protocol.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class Delivery:
    """One message a fake took (or the log channel wrote), as the outbox shows it."""

    channel: str
    at: float  # wall clock
    to: str
    text: str
    subject: str | None = None
    uuid: str | None = None
    #: What else identifies it: the sender, a mail's headers, the webhook's URL.
    details: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pretty(value: Any) -> str:
    """``value`` as indented JSON text (for payloads the outbox shows as they were sent)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()
