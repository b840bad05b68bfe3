"""The OpenAPI 3.1 document of the receiver, generated from the rules that validation enforces.

Every constraint on a request comes from :class:`notifsvc.api.validation.Validator`: its
field rules (:attr:`~notifsvc.api.validation.Validator.rules`) and, per enabled channel, what
that channel's ``validate`` checks and JSON Schema can say
(:attr:`~notifsvc.api.validation.Validator.branches`). What JSON Schema cannot say (an
e-mail address's syntax, a phone number's validity, Slack's combined subject and text
length, the body's size in bytes) is in the descriptions, and answered 422 or 413.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

from notifsvc.api.validation import Validator
from notifsvc.attempts import AttemptOutcome
from notifsvc.config import Settings
from notifsvc.model import REQUEST_FIELDS, Priority, Reason, State

#: A route module's contribution to the document: its paths, given the settings, the
#: validator and the problem answers every protected route shares (by status).
PathsOf = Callable[[Settings, Validator, dict[str, tuple[str, str]]], dict[str, Any]]

PROBLEM = {"$ref": "#/components/schemas/Problem"}
NOTIFICATION = {"$ref": "#/components/schemas/Notification"}
BATCH_RESULT = {"$ref": "#/components/schemas/BatchResult"}


def _examples(validator: Validator) -> dict[str, Any]:
    """An example per field that every enabled channel accepts in any combination."""
    examples = {s.name: s.example for s in REQUEST_FIELDS if s.example is not None}
    if validator.channels:
        examples["destination"] = sorted(validator.channels)[0]
    else:
        examples.pop("destination", None)
    if any(c.validate_recipient(str(examples.get("to", ""))) for c in validator.channels.values()):
        examples.pop("to", None)
    if validator.callback_hosts:
        host = sorted(validator.callback_hosts)[0]
        examples["callback_url"] = f"https://{host}/notifsvc/status"
    return examples


def notification_schema(validator: Validator) -> dict[str, Any]:
    """The request body of ``POST /notification``: the field rules, then one ``anyOf``
    branch per enabled channel (its destination, recipient, lengths)."""
    examples = _examples(validator)
    properties: dict[str, Any] = {}
    for spec in REQUEST_FIELDS:
        if spec.name not in validator.rules:  # an optional feature that is off
            continue
        prop = validator.rules[spec.name].schema() | {"description": spec.description}
        if spec.enum:
            prop["description"] += f" One of {', '.join(spec.enum)}, in any case."
        if spec.name in examples:
            prop["examples"] = [examples[spec.name]]
        properties[spec.name] = prop
    enabled = ", ".join(sorted(validator.channels)) or "none"
    limits = ", ".join(f"{n}: {c.max_body_chars}" for n, c in sorted(validator.channels.items()))
    properties["destination"]["description"] += f" Enabled: {enabled}."
    properties["txt"]["description"] += f" Limits (characters): {limits or 'none'}."
    properties["send_at"]["description"] += (
        f" Here: at most {validator.horizon:g} s ahead, at most {validator.tolerance:g} s back."
    )
    branches = [
        {
            "title": name,
            "properties": {field: rule.schema() for field, rule in rules.items()},
        }
        for name, rules in validator.branches.items()
    ]
    schema: dict[str, Any] = {
        "type": "object",
        "required": [s.name for s in REQUEST_FIELDS if s.required],
        "properties": properties,
        "additionalProperties": False,
        # expires_at or ttl_seconds, not both (null is absent)
        "not": {
            "required": ["expires_at", "ttl_seconds"],
            "properties": {"expires_at": {"type": "string"}, "ttl_seconds": {"type": "integer"}},
        },
    }
    if branches:
        schema["anyOf"] = branches
    else:  # no channel is enabled: no notification is valid
        properties["destination"]["not"] = {}
    return schema


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _batch_result() -> dict[str, Any]:
    status = {"type": "string", "enum": ["accepted", "rejected", "unavailable"]}
    item = _object(
        {
            "index": {"type": "integer", "minimum": 0},
            "uuid": {"type": "string", "format": "uuid"},
            "status": status,
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
        },
        ["index", "status"],
    )
    counts = {name: {"type": "integer", "minimum": 0} for name in status["enum"]}
    results = {"type": "array", "items": item}
    return _object(counts | {"results": results}, [*status["enum"], "results"])


def _attempts() -> dict[str, Any]:
    """``GET /notification/{uuid}/attempts``: the history, oldest first."""
    text = {"type": ["string", "null"]}
    when = {"type": "string", "format": "date-time"}
    attempt = _object(
        {
            "attempt": {
                "type": "integer",
                "minimum": 1,
                "description": "The attempt's number, 1-based across passes; for a throttled "
                "answer (which spends none), the number of the attempt it held back.",
            },
            "outcome": {"enum": [o.value for o in AttemptOutcome]},
            "counted": {
                "type": "boolean",
                "description": "Whether it counts toward the notification's `attempts` "
                "(false for `throttled`).",
            },
            "started_at": when,
            "finished_at": when,
            "provider": {"type": "string"},
            "status_code": {
                "type": ["integer", "null"],
                "description": "The provider's status code (HTTP), when it answered.",
            },
            "message_id": text | {"description": "The provider's id for the message."},
            "error_class": text,
            "error": text | {"description": "What went wrong, without secrets."},
        },
        ["attempt", "outcome", "counted", "started_at", "finished_at", "provider"],
    )
    return _object(
        {
            "uuid": {"type": "string", "format": "uuid"},
            "attempts": {"type": "array", "items": attempt},
        },
        ["uuid", "attempts"],
    )


def _state() -> dict[str, Any]:
    """``GET /notification/{uuid}`` (and each item of ``GET /notifications``): the stored
    notification, as posted (``to``, ``txt`` are the client's text), and where it is."""
    text = {"type": ["string", "null"]}
    when = {"type": ["string", "null"], "format": "date-time"}
    count = {"type": "integer", "minimum": 0}
    times = ("forwarded_at", "sent_at", "failed_at", "canceled_at", "expired_at")
    properties: dict[str, Any] = {
        "uuid": {"type": "string", "format": "uuid"},
        "channel": {"type": "string"},
        "state": {
            "enum": [s.value for s in State],
            "description": "received -> forwarded -> sending -> sent | failed; received or "
            "forwarded -> canceled; failed -> forwarded (retried); received -> scheduled "
            "(send_at ahead) -> forwarded when due, or -> canceled; any unfinished state -> "
            "expired (its expires_at passed before it was sent: never sent).",
        },
        "reason": {
            "enum": [*(r.value for r in Reason), None],
            "description": "Why a failed notification failed, where a client can act "
            "on it (token_invalid: delete the device token or subscription).",
        },
        "last_error": text,
        "attempts": count,
        "conflicts": count,
        "priority": {"enum": [p.value for p in Priority]},
        "to": {"type": "string"},
        "subject": text,
        "txt": {"type": "string"},
        "callback_url": text,
        "send_at": when | {"description": "When it is to be sent (null: at once)."},
        "expires_at": when | {"description": "After when it is never sent (null: never)."},
        "accepted_at": {"type": "string", "format": "date-time"},
        "received_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        **dict.fromkeys(times, when),
    }
    return _object(properties, list(properties))


def _components(validator: Validator) -> dict[str, Any]:
    string = {"type": "string"}
    schemas = {
        "Notification": notification_schema(validator),
        "Accepted": _object(
            {"uuid": {"type": "string", "format": "uuid"}, "status": {"const": "accepted"}},
            ["uuid", "status"],
        ),
        "FieldError": _object({"field": string, "message": string}, ["field", "message"]),
        "Problem": _object(
            {
                "type": string,
                "title": string,
                "status": {"type": "integer"},
                "detail": string,
                "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
            },
            ["type", "title", "status", "detail"],
        )
        | {"description": "RFC 9457 problem details; `errors` lists every failing field."},
        "BatchResult": _batch_result(),
        "State": _state(),
        "Attempts": _attempts(),
        "Readiness": _object(
            {
                "status": {"enum": ["ready", "degraded", "unavailable"]},
                "broker": {"enum": ["ok", "unavailable"]},
                "database": {"enum": ["ok", "unavailable"]},
            },
            ["status", "broker", "database"],
        ),
        "Health": _object({"status": {"const": "ok"}}, ["status"]),
    }
    return {
        "schemas": schemas,
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
    }


def answer_json(status: str, text: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {status: {"description": text, "content": {"application/json": {"schema": schema}}}}


def answer_problems(*errors: tuple[str, str]) -> dict[str, Any]:
    content = {"application/problem+json": {"schema": PROBLEM}}
    return {code: {"description": why, "content": content} for code, why in errors}


def _errors(settings: Settings, burst: float | None) -> dict[str, tuple[str, str]]:
    """The problem+json answers of the notification routes, by status."""
    errors = {
        "400": ("400", "Malformed JSON, or a body its Content-Encoding does not decode"),
        "413": ("413", "Body (decompressed) larger than the configured limit"),
        "415": ("415", "Content-Type is not application/json, or an unsupported encoding"),
        "422": ("422", "Invalid notification; every failing field is listed"),
        "503": ("503", "The broker did not acknowledge in time; retry with the same uuid"),
    }
    if settings.api_keys:
        errors["401"] = ("401", "Missing or invalid API key")
        limit = f" (at most {int(burst)} notifications per request)" if burst else ""
        errors["429"] = ("429", f"Rate limit of this API key exceeded{limit}; see Retry-After")
    return errors


def _post_notification(errors: dict[str, tuple[str, str]]) -> dict[str, Any]:
    return {
        "summary": "Accept one notification (202 only once the broker holds it)",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": NOTIFICATION}},
        },
        "responses": answer_json("202", "Accepted", {"$ref": "#/components/schemas/Accepted"})
        | answer_problems(*errors.values()),
    }


def _post_notifications(settings: Settings, errors: dict[str, tuple[str, str]]) -> dict[str, Any]:
    # An item is checked on its own: a request with invalid items is still answered 200, each
    # of them "rejected" in `results`. So the request schema cannot require Notification items
    # (the API would then accept what its document calls invalid); it names them instead.
    item = {
        "description": "A Notification (#/components/schemas/Notification); an item that is "
        "not one is rejected in `results`, with its errors, while the others are stored."
    }
    batch = {
        "type": "array",
        "items": item,
        "minItems": 1,
        "maxItems": settings.max_batch_items,
    }
    unavailable = "The broker acknowledged none of the valid items; retry them"
    answered = {k: v for k, v in errors.items() if k != "503"}
    return {
        "summary": f"Accept up to {settings.max_batch_items} notifications, each answered",
        "description": "Each item is validated and stored on its own; `results` says which.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": batch}}},
        "responses": answer_json("200", "Per-item results", BATCH_RESULT)
        | answer_json("503", unavailable, BATCH_RESULT)
        | answer_problems(*answered.values()),
    }


def _get_notification(validator: Validator, errors: dict[str, tuple[str, str]]) -> dict[str, Any]:
    summary = "Stored notification: its state, attempts and times"
    return _by_uuid(validator, errors, summary, "State")


def _get_attempts(validator: Validator, errors: dict[str, tuple[str, str]]) -> dict[str, Any]:
    summary = "Every send attempt, oldest first: outcome, times, provider status"
    return _by_uuid(validator, errors, summary, "Attempts")


def _by_uuid(
    validator: Validator, errors: dict[str, tuple[str, str]], summary: str, schema: str
) -> dict[str, Any]:
    """A ``GET`` of something stored under a notification's uuid, answered as ``schema``."""
    keyed = [errors[k] for k in ("401", "429") if k in errors]
    uuid = validator.rules["uuid"].schema()
    return {
        "summary": summary,
        "parameters": [{"name": "uuid", "in": "path", "required": True, "schema": uuid}],
        "responses": answer_json("200", schema, {"$ref": f"#/components/schemas/{schema}"})
        | answer_problems(
            ("404", "Not stored (yet)"),
            ("422", "Not a UUID"),
            ("503", "The database is unreachable"),
            *keyed,
        ),
    }


def _pages() -> dict[str, Any]:
    text = {"200": {"description": "text", "content": {"text/plain": {"schema": {}}}}}
    readiness = {"$ref": "#/components/schemas/Readiness"}
    return {
        "/healthz": {
            "get": {
                "summary": "Process alive",
                "responses": answer_json("200", "ok", {"$ref": "#/components/schemas/Health"}),
            }
        },
        "/readyz": {
            "get": {
                "summary": "Broker and database reachable (never says why not: see the log)",
                "responses": answer_json("200", "ready or degraded", readiness)
                | answer_json("503", "the broker is unavailable", readiness),
            }
        },
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": text}},
    }


def _paths(settings: Settings, validator: Validator, burst: float | None) -> dict[str, Any]:
    errors = _errors(settings, burst)
    return {
        "/notification": {"post": _post_notification(errors)},
        "/notifications": {"post": _post_notifications(settings, errors)},
        "/notification/{uuid}": {"get": _get_notification(validator, errors)},
        "/notification/{uuid}/attempts": {"get": _get_attempts(validator, errors)},
        **_pages(),
    }


def document(
    settings: Settings,
    validator: Validator,
    *,
    burst: float | None = None,
    extra: Sequence[PathsOf] = (),
) -> dict[str, Any]:
    """The document for ``settings``; ``burst`` is an API key's most notifications at once;
    ``extra`` adds the paths of other route modules (see :data:`PathsOf`)."""
    paths = _paths(settings, validator, burst)
    for more in extra:  # a module may add methods to a path that has others
        for path, methods in more(settings, validator, _errors(settings, burst)).items():
            paths.setdefault(path, {}).update(methods)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "notifsvc receiver",
            "version": "1",
            "description": f"Bodies up to {settings.max_body_bytes} bytes, batches up to "
            f"{settings.max_batch_bytes} bytes (after any Content-Encoding is undone).",
        },
        "paths": paths,
        "components": _components(validator),
    }
    if settings.api_keys:
        doc["security"] = [{"apiKey": []}]
    return doc


def render_html(doc: dict[str, Any]) -> str:
    """A readable, self-contained HTML page of the document (no scripts, no CDN)."""
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = ", ".join(
                f"{c} {html.escape(r['description'])}" for c, r in op["responses"].items()
            )
            rows.append(
                f"<tr><td><code>{method.upper()} {html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td><td>{codes}</td></tr>"
            )
    fields = []
    schema = doc["components"]["schemas"]["Notification"]
    for name, prop in schema["properties"].items():
        required = "required" if name in schema["required"] else "optional"
        fields.append(
            f"<tr><td><code>{name}</code></td><td>{required}</td>"
            f"<td>{html.escape(prop['description'])}</td></tr>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>notifsvc API</title>"
        "<style>body{font-family:sans-serif;margin:2em}"
        "td{border-top:1px solid #ddd;padding:4px 8px;vertical-align:top}</style></head><body>"
        f"<h1>{html.escape(doc['info']['title'])}</h1><p>{html.escape(doc['info']['description'])}"
        " The machine-readable document is <a href='/openapi.json'>/openapi.json</a>.</p>"
        f"<h2>Endpoints</h2><table>{''.join(rows)}</table>"
        f"<h2>Notification fields</h2><table>{''.join(fields)}</table></body></html>"
    )
