"""Provider fakes: real servers on 127.0.0.1 with scriptable failures, one implementation
for the tests, ``notifsvc dev`` (its stand-ins and outbox page) and the compose stack.

- :mod:`~notifsvc.dev.fakes.smtp` (``FakeSmtp``, an aiosmtpd server: the ``dev`` extra),
- :mod:`~notifsvc.dev.fakes.twilio` (``FakeTwilio``), :mod:`~notifsvc.dev.fakes.slack`
  (``FakeSlack``), :mod:`~notifsvc.dev.fakes.webhook` (``WebhookSink``),
- :mod:`~notifsvc.dev.fakes.otlp` (``OtlpCollector``, an OpenTelemetry trace endpoint),
- :mod:`~notifsvc.dev.fakes.script` (``Script``: fail, throttle or hang on demand).

Each is an async context manager (or ``start()``/``stop()``) and has ``config()``: its
channel's settings section pointed at it (``settings.with_sections(fake.config())``). The
HTTP fakes can also share one server: :meth:`~notifsvc.dev.fakes.http.HttpFake.routes` adds a fake's
routes to any application, and :meth:`~notifsvc.dev.fakes.http.HttpFake.serve_at` tells it
where that server listens. ``keep`` bounds what a long-running fake remembers.

Nothing is imported here, so that the HTTP fakes work without the ``dev`` extra.
"""
