"""The receiver's HTTP API, in three layers (assembled by :mod:`notifsvc.receiver`):

- :mod:`~notifsvc.api.plumbing`: HTTP mechanics: problem+json answers, bounded body
  reading (decompressed bytes count), the wrapper every route is registered with
  (metrics, errors as problem+json, API keys);
- :mod:`~notifsvc.api.validation`: what a valid request is, built once at start-up from the
  enabled channels; the OpenAPI document (:mod:`notifsvc.openapi`) is generated from it;
- :mod:`~notifsvc.api.handlers`: one function per route.

:mod:`~notifsvc.api.context` holds the keys under which the application keeps its parts.
"""
