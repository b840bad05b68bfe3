"""Optional OpenTelemetry tracing: one trace per notification, from the HTTP request to the send.

Off unless ``NOTIFSVC_TRACING_ENDPOINT`` names an OTLP/HTTP collector (``http://host:4318``).
The receiver starts a span per request (a child of the client's own ``traceparent`` header,
if it sends one) and writes its W3C trace context into the Kafka message's headers. The
router continues it with a span per forwarded notification, the notificator with a span per
send; retry-lane and dead-letter messages carry the context on. Each stage exports to the
collector under its own ``service.name``. Disabled, every call here is a cheap no-op: no
spans, no headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Final, Self
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from notifsvc.config import Settings

log = logging.getLogger(__name__)

Headers = tuple[tuple[str, bytes], ...]
#: The W3C trace-context headers, on HTTP requests and on Kafka messages alike.
TRACE_HEADERS: Final = ("traceparent", "tracestate")
_PROPAGATOR: Final = TraceContextTextMapPropagator()
Attributes = Mapping[str, str | int | float | bool]

__all__ = ["TRACE_HEADERS", "Headers", "Span", "SpanKind", "Spans", "Tracing"]


class Tracing:
    """One stage's tracer. ``start()`` connects nothing yet: spans are exported in batches
    by a background thread; ``stop()`` exports what is left (safe to call twice)."""

    def __init__(self, settings: Settings, service: str) -> None:
        self.endpoint = settings.tracing_endpoint
        self.ratio = settings.tracing_sample_ratio
        self.service = service
        self._provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def start(self) -> None:
        if self._provider is not None or not self.endpoint:
            return
        provider = TracerProvider(
            resource=Resource.create({"service.name": self.service}),
            sampler=ParentBased(TraceIdRatioBased(self.ratio)),
        )
        exporter = OTLPSpanExporter(endpoint=f"{self.endpoint.rstrip('/')}/v1/traces", timeout=5)
        # A full queue drops spans rather than slow a request down: room for a few seconds
        # at a few thousand notifications per second.
        processor = BatchSpanProcessor(
            exporter, max_queue_size=16_384, max_export_batch_size=2_048, schedule_delay_millis=1000
        )
        provider.add_span_processor(processor)
        self._provider = provider
        self._tracer = provider.get_tracer("notifsvc")
        where = urlsplit(self.endpoint).netloc.rpartition("@")[2]  # never log credentials
        log.info("tracing %s to %s (sample ratio %s)", self.service, where, self.ratio)

    async def stop(self) -> None:
        provider, self._provider, self._tracer = self._provider, None, None
        if provider is not None:  # export what is queued, off the event loop
            await asyncio.to_thread(provider.shutdown)

    def begin(
        self,
        name: str,
        *,
        parent: Headers | Mapping[str, str] = (),
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes | None = None,
        start_time: int | None = None,
    ) -> Span | None:
        """A started span (end it with :func:`end`), continuing the trace in ``parent``
        headers; None while tracing is off. ``start_time`` is in ns since the epoch."""
        if self._tracer is None:
            return None
        context = extract(parent)
        return self._tracer.start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=start_time
        )

    @contextmanager
    def span(
        self,
        name: str,
        *,
        parent: Headers | Mapping[str, str] = (),
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes | None = None,
    ) -> Iterator[Span | None]:
        """:meth:`begin` as a context manager; an exception marks the span as an error."""
        span = self.begin(name, parent=parent, kind=kind, attributes=attributes)
        try:
            yield span
        except BaseException as exc:
            end(span, error=repr(exc))
            raise
        end(span)


class Spans:
    """A batch's open spans by key (a notification's UUID), ended together when the ``with``
    block ends; an exception marks them all failed."""

    def __init__(self) -> None:
        self._spans: dict[Hashable, Span] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end(error=None if e is None else repr(e))

    def __setitem__(self, key: Hashable, span: Span | None) -> None:
        if span is not None:
            self._spans[key] = span

    def headers(self, key: Hashable) -> Headers:
        # (with tracing off there is no span: no look-up, which hashes a UUID in Python)
        return headers(self._spans.get(key)) if self._spans else ()

    def end(self, *, error: str | None = None) -> None:
        spans, self._spans = self._spans, {}
        for span in spans.values():
            end(span, error=error)


def end(span: Span | None, *, error: str | None = None) -> None:
    """End ``span`` (if any), marking it failed when ``error`` is given."""
    if span is None:
        return
    if error is not None:
        fail(span, error)
    span.end()


def annotate(span: Span | None, **attributes: str | int | float | bool) -> None:
    if span is not None:
        span.set_attributes({f"notifsvc.{k}": v for k, v in attributes.items()})


def fail(span: Span | None, error: str) -> None:
    """Mark ``span`` failed without ending it."""
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, error))


def end_http(span: Span | None, status: int) -> None:
    """End a server span with the response's status (5xx marks it failed)."""
    if span is not None:
        span.set_attribute("http.response.status_code", status)
        end(span, error=f"HTTP {status}" if status >= 500 else None)


def headers(span: Span | None) -> Headers:
    """The trace-context headers that make ``span`` the parent of the next stage's span."""
    if span is None:
        return ()
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return tuple((k, v.encode()) for k, v in carrier.items())


def carried(message_headers: Sequence[tuple[str, bytes]]) -> Headers:
    """The trace-context headers among a message's headers (to pass them on unchanged)."""
    return tuple((k, v) for k, v in message_headers if k in TRACE_HEADERS)


def extract(parent: Sequence[tuple[str, bytes]] | Mapping[str, str]) -> Context | None:
    """The context in W3C trace-context headers: Kafka ``(name, bytes)`` pairs or HTTP ones."""
    if not parent:
        return None
    if isinstance(parent, Mapping):
        carrier = {k: parent[k] for k in TRACE_HEADERS if k in parent}
    else:
        carrier = {k: v.decode("latin-1") for k, v in parent if k in TRACE_HEADERS}
    return _PROPAGATOR.extract(carrier) if carrier else None
