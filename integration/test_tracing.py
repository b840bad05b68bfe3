"""Tracing: one trace per notification, from the client's request to the provider."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from integration.helpers import deliveries, eventually, notification, read_topic, running
from notifsvc import topics, tracing
from notifsvc.channels import AnyChannel
from notifsvc.channels.log import LogChannel, LogSettings
from notifsvc.channels.webhook import WebhookChannel
from notifsvc.config import Settings
from notifsvc.dev.fakes.otlp import OtlpCollector, ReceivedSpan
from notifsvc.dev.fakes.script import Script
from notifsvc.dev.fakes.webhook import WebhookSink
from notifsvc.notificator import Notificator
from notifsvc.receiver import ReceiverServer
from notifsvc.router import Router

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
SERVER, CLIENT, CONSUMER = 2, 3, 5  # OTLP span kinds
ERROR = 2  # OTLP status code


@asynccontextmanager
async def pipeline(settings: Settings, channel: AnyChannel) -> AsyncIterator[aiohttp.ClientSession]:
    """Receiver, router and ``channel``'s notificator running; a client of the receiver.
    On the way out every stage stops, which exports the spans it still holds."""
    base = f"http://{settings.http_host}:{settings.http_port}"
    async with (
        running(ReceiverServer(settings)),
        running(Router(settings)),
        running(Notificator(settings, channel)),
        aiohttp.ClientSession(base) as api,
    ):
        yield api


def only(spans: list[ReceivedSpan]) -> ReceivedSpan:
    assert len(spans) == 1, spans
    return spans[0]


async def test_a_trace_follows_a_notification_from_the_request_to_the_send(
    settings: Settings,
) -> None:
    body = notification()
    async with OtlpCollector() as collector:
        traced = dataclasses.replace(settings, **collector.settings())
        async with pipeline(traced, LogChannel(traced)) as api:
            async with api.post(
                "/notification", json=body, headers={"traceparent": CLIENT_TRACEPARENT}
            ) as resp:
                assert resp.status == 202
            path = traced.section(LogSettings).path
            assert path is not None
            await eventually(lambda: _true(deliveries(path)[str(body["uuid"])] >= 1))
    accept = only(collector.named("POST /notification"))
    route = only(collector.named("route notification"))
    send = only(collector.named("send log"))
    assert {accept.trace_id, route.trace_id, send.trace_id} == {CLIENT_TRACE}
    assert accept.parent_span_id == CLIENT_SPAN
    assert route.parent_span_id == accept.span_id
    assert send.parent_span_id == route.span_id
    assert (accept.service, route.service, send.service) == (
        "notifsvc-receiver",
        "notifsvc-router",
        "notifsvc-notificator-log",
    )
    assert (accept.kind, route.kind, send.kind) == (SERVER, CONSUMER, CLIENT)
    assert accept.attributes["http.response.status_code"] == 202
    uid = str(body["uuid"])
    assert accept.attributes["notifsvc.uuid"] == route.attributes["notifsvc.uuid"] == uid
    assert send.attributes["notifsvc.uuid"] == uid
    assert send.attributes["notifsvc.state"] == "sent"


async def test_a_failed_send_is_an_error_span_and_its_dead_letter_keeps_the_trace(
    settings: Settings,
) -> None:
    async with OtlpCollector() as collector, WebhookSink(Script(400)) as sink:
        traced = dataclasses.replace(settings, **collector.settings()).with_sections(sink.config())
        body = notification("webhook", to=sink.hook_url())
        async with pipeline(traced, WebhookChannel(traced)) as api:
            async with api.post("/notification", json=body) as resp:
                assert resp.status == 202
            [dead] = await read_topic(traced, topics.dlq(traced), 1)
    accept = only(collector.named("POST /notification"))
    send = only(collector.named("send webhook"))
    assert send.trace_id == accept.trace_id and accept.parent_span_id == ""
    assert send.status == ERROR and send.attributes["notifsvc.state"] == "failed"
    traceparent = dead.header("traceparent")
    assert traceparent is not None and traceparent.decode().split("-")[1] == accept.trace_id


async def test_tracing_off_adds_no_headers_to_messages(
    settings: Settings, api: aiohttp.ClientSession
) -> None:
    async with api.post(
        "/notification", json=notification(), headers={"traceparent": CLIENT_TRACEPARENT}
    ) as resp:
        assert resp.status == 202
    [record] = await read_topic(settings, topics.outstanding(settings), 1)
    assert record.headers == ()


async def test_a_span_continues_the_trace_of_http_or_kafka_headers() -> None:
    async with OtlpCollector() as collector:
        t = tracing.Tracing(Settings(**collector.settings()), "svc")
        t.start()
        try:
            http = t.begin("a", parent={"traceparent": CLIENT_TRACEPARENT, "other": "x"})
            kafka = t.begin("b", parent=(("traceparent", CLIENT_TRACEPARENT.encode()), ("k", b"v")))
            for span in (http, kafka):
                assert span is not None
                context = span.get_span_context()
                assert f"{context.trace_id:032x}" == CLIENT_TRACE
                # the headers for the next stage name this span as the parent
                [(name, value)] = tracing.headers(span)
                assert name == "traceparent"
                assert value.decode().split("-")[1:3] == [CLIENT_TRACE, f"{context.span_id:016x}"]
                tracing.end(span)
            root = t.begin("c")
            assert root is not None and f"{root.get_span_context().trace_id:032x}" != CLIENT_TRACE
            tracing.end(root)
        finally:
            await t.stop()
            await t.stop()  # twice is harmless
        assert not t.enabled
    assert {s.name for s in collector.spans} == {"a", "b", "c"}  # exported by stop()


async def test_an_exception_in_a_span_marks_it_failed() -> None:
    async with OtlpCollector() as collector:
        t = tracing.Tracing(Settings(**collector.settings()), "svc")
        t.start()
        with pytest.raises(RuntimeError), t.span("boom"):
            raise RuntimeError("provider exploded")
        await t.stop()
    [boom] = collector.spans
    assert boom.status == ERROR


async def test_a_failed_batch_marks_every_span_of_it_failed() -> None:
    async with OtlpCollector() as collector:
        t = tracing.Tracing(Settings(**collector.settings()), "svc")
        t.start()
        with pytest.raises(ConnectionError), tracing.Spans() as spans:
            spans[1], spans[2] = t.begin("one"), t.begin("two")
            spans[3] = None  # tracing off for that one: nothing to end
            assert spans.headers(1) and spans.headers(3) == ()
            raise ConnectionError("database went away")
        await t.stop()
    assert sorted((s.name, s.status) for s in collector.spans) == [("one", ERROR), ("two", ERROR)]


async def _true(value: bool) -> bool:
    return value


async def test_a_server_span_fails_on_a_5xx_answer_only() -> None:
    async with OtlpCollector() as collector:
        t = tracing.Tracing(Settings(**collector.settings()), "svc")
        t.start()
        for status in (202, 422, 503):
            tracing.end_http(t.begin(f"answer {status}"), status)
        await t.stop()
    got = {s.name: (s.status, s.attributes["http.response.status_code"]) for s in collector.spans}
    assert got == {"answer 202": (0, 202), "answer 422": (0, 422), "answer 503": (ERROR, 503)}
