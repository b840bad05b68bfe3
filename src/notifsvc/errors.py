"""One error taxonomy for every stage: each failure is one of three kinds.

Errors are classified where they enter the code (the Kafka layer, the store, a channel), as
httpx maps transport errors at its boundary, so that the retry and isolation policy lives
in one place (:mod:`notifsvc.batching` and :mod:`notifsvc.delivery`):

- :class:`Unavailable`: the database, the broker or a provider is away for now (outages,
  timeouts, serialization failures, deadlocks, too many connections). Pause and retry;
  never spend a delivery attempt, never dead-letter.
- :class:`RecordError`: permanent for the record at hand (bad data, too large, refused for
  good). Isolate that record, dead-letter it with the reason and carry on with the rest.
- :class:`StageError`: permanent for the stage (a missing topic or table, no authorization,
  bad configuration). Said in the log and in ``/readyz``; at start-up the stage exits
  non-zero; at run time it pauses like an outage, since dead-lettering every record would
  not help.

Anything else that escapes a handler is a bug; the batch loop treats it like a
:class:`RecordError` (bisecting the batch finds the record that triggers it), so that no
input can stop a stage.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    UNAVAILABLE = "unavailable"
    RECORD = "record"
    STAGE = "stage"


class PipelineError(Exception):
    """Base of the classified errors; ``kind`` says what to do about it."""

    kind: Kind = Kind.RECORD


class Unavailable(PipelineError):
    """Something the stage depends on is away for now: pause and retry."""

    kind = Kind.UNAVAILABLE


class RecordError(PipelineError):
    """Permanent for this record: isolate it and dead-letter it with this reason."""

    kind = Kind.RECORD


class StageError(PipelineError):
    """Permanent for the stage until an operator acts (configuration, topics, schema)."""

    kind = Kind.STAGE


def kind_of(exc: BaseException) -> Kind:
    """The kind of ``exc``; an unclassified exception counts as permanent for its record."""
    if isinstance(exc, PipelineError):
        return exc.kind
    return Kind.RECORD


def retriable(exc: BaseException) -> bool:
    """True when waiting may help: the batch is retried as a whole after a pause."""
    return kind_of(exc) is not Kind.RECORD
