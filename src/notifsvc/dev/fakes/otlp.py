"""An OpenTelemetry collector's OTLP/HTTP trace endpoint: decodes what exporters send."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from notifsvc.dev.fakes.http import HttpFake


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: int  # the OTLP enum: 2 server, 3 client, 5 consumer
    status: int  # 0 unset, 1 ok, 2 error
    attributes: dict[str, Any]


class OtlpCollector(HttpFake):
    """``POST /v1/traces`` in protobuf; ``spans`` holds every span received."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[ReceivedSpan] = []

    def settings(self) -> dict[str, Any]:
        return {"tracing_endpoint": self.url}

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/traces", self._traces)

    async def _traces(self, request: web.Request) -> web.Response:
        seen = await self.record(request)
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415, text=f"unexpected {request.content_type}")
        body = seen.body
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        for resource_spans in export.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                self.spans += [_span(resource["service.name"], s) for s in scope_spans.spans]
        answer = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=answer, content_type="application/x-protobuf")

    def named(self, name: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.name == name]


def _span(service: str, s: Any) -> ReceivedSpan:
    return ReceivedSpan(
        service=service,
        name=s.name,
        trace_id=s.trace_id.hex(),
        span_id=s.span_id.hex(),
        parent_span_id=s.parent_span_id.hex(),
        kind=s.kind,
        status=s.status.code,
        attributes=_attributes(s.attributes),
    )


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None
