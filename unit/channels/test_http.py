from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from notifsvc.channels.base import PermanentError, TransientError
from notifsvc.channels.http import base_url_problem, classify_status, parse_retry_after


def test_success_is_no_error() -> None:
    assert classify_status("p", 204, {}, "") is None


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_retriable_statuses(status: int) -> None:
    error = classify_status("p", status, {"Retry-After": "7"}, "busy")
    assert isinstance(error, TransientError)
    assert error.retriable and error.retry_after == 7.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_permanent_statuses(status: int) -> None:
    error = classify_status("p", status, {}, "bad")
    assert isinstance(error, PermanentError)
    assert not error.retriable and f"HTTP {status}" in str(error)


def test_retry_after_as_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    value = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(value, now=now.timestamp()) == pytest.approx(30.0)


@pytest.mark.parametrize("value", [None, "", "soon"])
def test_unusable_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_base_url_problem_names_the_variable() -> None:
    assert base_url_problem("NOTIFSVC_X", "https://api.example.com/v1") is None
    assert base_url_problem("NOTIFSVC_X", "http://127.0.0.1:8080") is None
    for bad in ("api.example.com", "ftp://api.example.com", "https://", "http://[::1"):
        problem = base_url_problem("NOTIFSVC_X", bad)
        assert problem is not None
        assert "NOTIFSVC_X" in problem
