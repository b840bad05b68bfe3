from __future__ import annotations

import logging

import pytest

from notifsvc import tracing
from notifsvc.config import Settings

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_off_by_default_and_then_a_no_op() -> None:
    t = tracing.Tracing(Settings(), "svc")
    t.start()
    assert not t.enabled
    assert t.begin("x", parent={"traceparent": TRACEPARENT}) is None
    with t.span("x") as span:
        assert span is None
    assert tracing.headers(None) == ()
    tracing.annotate(None, uuid="u")
    tracing.end_http(None, 500)
    await t.stop()


def test_only_trace_context_headers_are_carried_on() -> None:
    headers = (("notifsvc-attempts", b"2"), ("traceparent", b"tp"), ("tracestate", b"ts"))
    assert tracing.carried(headers) == (("traceparent", b"tp"), ("tracestate", b"ts"))
    assert tracing.extract(()) is None
    assert tracing.extract({"unrelated": "x"}) is None


async def test_credentials_in_the_endpoint_are_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = tracing.Tracing(Settings(tracing_endpoint="https://user:s3cret@otel.example"), "svc")
    with caplog.at_level(logging.INFO, logger="notifsvc.tracing"):
        t.start()
    await t.stop()
    assert "otel.example" in caplog.text and "s3cret" not in caplog.text
