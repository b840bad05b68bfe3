"""Every database error leaves the store classified (unavailable / record / stage)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifsvc import errors
from notifsvc.db import store
from notifsvc.model import Notification


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),  # 40P01
        asyncpg.exceptions.SerializationError("restart transaction"),  # 40001
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),  # 53300
        asyncpg.exceptions.QueryCanceledError("statement timeout"),  # 57014
        asyncpg.exceptions.AdminShutdownError("terminating"),  # 57P01
        asyncpg.exceptions.ReadOnlySQLTransactionError("read-only"),  # 25006
        ConnectionResetError("reset"),
        TimeoutError(),
        asyncpg.exceptions.InterfaceError("connection is closed"),
        # seen in the database-outage chaos scenario on a connection the restart broke
        asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation"),
        # the server's own trouble, not the data's: PostgreSQL's internal error, and
        # CockroachDB's uncategorized code (e.g. a range whose replicas are unavailable)
        asyncpg.exceptions.InternalServerError("internal error"),  # XX000
        asyncpg.exceptions.PostgresError.new({"C": "XXUUU", "M": "replica unavailable"}),
    ],
)
def test_outages_deadlocks_and_timeouts_are_unavailable(exc: BaseException) -> None:
    classified = store.classify(exc)
    assert isinstance(classified, store.StoreUnavailable)
    assert store.is_retriable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence"),  # 22021
        asyncpg.exceptions.CheckViolationError("violates check"),  # 23514
        asyncpg.exceptions.ProgramLimitExceededError("row too big"),  # 54000
        asyncpg.exceptions.DataError("invalid input for query argument"),
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),  # client side
        RuntimeError("unexpected"),
    ],
)
def test_refused_data_is_permanent_for_the_record(exc: BaseException) -> None:
    assert isinstance(store.classify(exc), store.StoreRefused)
    assert errors.kind_of(store.classify(exc)) is errors.Kind.RECORD


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.UndefinedTableError("relation does not exist"),  # 42P01
        asyncpg.exceptions.InsufficientPrivilegeError("permission denied"),  # 42501
        asyncpg.exceptions.InvalidPasswordError("password authentication failed"),  # 28P01
        asyncpg.exceptions.InvalidCatalogNameError("database does not exist"),  # 3D000
    ],
)
def test_schema_and_access_problems_are_permanent_for_the_stage(exc: BaseException) -> None:
    assert isinstance(store.classify(exc), store.StoreMisconfigured)


def test_insert_is_cut_into_statements_by_bytes_and_ordered_by_uuid() -> None:
    big = "x" * (store.MAX_STATEMENT_BYTES // 3)
    batch = [Notification(uuid.uuid4(), "log", "ops", big if i % 2 else "small") for i in range(10)]
    chunks = store._chunks(sorted(batch, key=lambda n: n.uuid))
    assert len(chunks) > 1
    assert [n for c in chunks for n in c] == sorted(batch, key=lambda n: n.uuid)
    for chunk in chunks:
        assert sum(len(n.txt) for n in chunk) <= store.MAX_STATEMENT_BYTES
    assert store._chunks([]) == []


def test_a_batch_of_multibyte_texts_is_cut_by_their_utf8_bytes_not_characters() -> None:
    big = "é" * (store.MAX_STATEMENT_BYTES // 4)  # a quarter of the bytes in characters
    batch = [Notification(uuid.uuid4(), "log", "ops", big) for _ in range(4)]
    chunks = store._chunks(batch)
    assert [len(c) for c in chunks] == [1, 1, 1, 1]  # two per statement would exceed it


@given(st.one_of(st.none(), st.text()))
def test_a_texts_utf8_length_is_that_of_its_encoding(text: str | None) -> None:
    assert store._utf8_len(text) == len((text or "").encode())


def test_an_error_text_quoting_a_provider_is_always_storable() -> None:
    """A provider answered with a NUL in its body; quoted in last_error, PostgreSQL refused
    the outcome (22021) and the batch loop dead-lettered a notification that had a reason."""
    assert store._storable("HTTP 503: broken\x00body") == "HTTP 503: broken\ufffdbody"
    assert store._storable("lone \ud800 surrogate") == "lone ? surrogate"
    assert store._storable("x" * 5000) == "x" * store.MAX_ERROR_CHARS
    assert store._storable(None) is None
