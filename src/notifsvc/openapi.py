"""The OpenAPI 3.1 document of the receiver, built from the same definitions as validation."""

from __future__ import annotations

import html
from typing import Any

from notifsvc.channels import Channel
from notifsvc.config import Settings
from notifsvc.model import REQUEST_FIELDS

PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _notification_schema(channels: dict[str, Channel]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for spec in REQUEST_FIELDS:
        prop: dict[str, Any] = {"type": "string", "description": spec.description}
        if spec.format:
            prop["format"] = spec.format
        if spec.enum:
            prop["enum"] = list(spec.enum)
        if spec.example:
            prop["examples"] = [spec.example]
        properties[spec.name] = prop
    limits = ", ".join(f"{name}: {c.max_body_chars}" for name, c in sorted(channels.items()))
    properties["destination"]["description"] += f" Enabled: {', '.join(sorted(channels))}."
    properties["txt"]["description"] += f" Limits (characters): {limits}."
    return {
        "type": "object",
        "required": [s.name for s in REQUEST_FIELDS if s.required],
        "properties": properties,
        "additionalProperties": False,
    }


def _components(settings: Settings, channels: dict[str, Channel]) -> dict[str, Any]:
    schemas = {
        "Notification": _notification_schema(channels),
        "Accepted": {
            "type": "object",
            "required": ["uuid", "status"],
            "properties": {
                "uuid": {"type": "string", "format": "uuid"},
                "status": {"const": "accepted"},
            },
        },
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; `errors` lists every failing field.",
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            },
        },
        "BatchResult": {
            "type": "object",
            "properties": {
                "accepted": {"type": "integer"},
                "rejected": {"type": "integer"},
                "results": {"type": "array", "items": {"type": "object"}},
            },
        },
    }
    return {
        "schemas": schemas,
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
    }


def _responses(ok: tuple[str, str, dict[str, Any]], *errors: tuple[str, str]) -> dict[str, Any]:
    status, text, schema = ok
    out: dict[str, Any] = {
        status: {"description": text, "content": {"application/json": {"schema": schema}}}
    }
    for code, why in errors:
        out[code] = {
            "description": why,
            "content": {"application/problem+json": {"schema": PROBLEM}},
        }
    return out


_ERRORS = (
    ("400", "Malformed JSON"),
    ("401", "Missing or invalid API key (when keys are configured)"),
    ("413", "Body larger than the configured limit"),
    ("415", "Content-Type is not application/json"),
    ("422", "Invalid notification; every failing field is listed"),
    ("429", "Rate limit of this API key exceeded; see Retry-After"),
    ("503", "The broker did not acknowledge in time; retry with the same uuid"),
)


def _paths(settings: Settings) -> dict[str, Any]:
    body = {"$ref": "#/components/schemas/Notification"}
    return {
        "/notification": {
            "post": {
                "summary": "Accept one notification (202 only once the broker holds it)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                },
                "responses": _responses(
                    ("202", "Accepted", {"$ref": "#/components/schemas/Accepted"}), *_ERRORS
                ),
            }
        },
        "/notifications": {
            "post": {
                "summary": f"Accept up to {settings.max_batch_items} notifications, each answered",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "items": body,
                                "maxItems": settings.max_batch_items,
                            }
                        }
                    },
                },
                "responses": _responses(
                    ("200", "Per-item results", {"$ref": "#/components/schemas/BatchResult"}),
                    *_ERRORS,
                ),
            }
        },
        "/notification/{uuid}": {
            "get": {
                "summary": "Stored state (received, forwarded, sent, failed), attempts, times",
                "parameters": [
                    {
                        "name": "uuid",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    }
                ],
                "responses": _responses(
                    ("200", "State", {"type": "object"}),
                    ("404", "Not stored (yet)"),
                    ("422", "Not a UUID"),
                ),
            }
        },
        "/healthz": {
            "get": {"summary": "Process alive", "responses": {"200": {"description": "ok"}}}
        },
        "/readyz": {
            "get": {
                "summary": "Broker and database reachable",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not"}},
            }
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}
        },
    }


def document(settings: Settings, channels: dict[str, Channel]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "notifsvc receiver",
            "version": "1",
            "description": f"Bodies up to {settings.max_body_bytes} bytes.",
        },
        "paths": _paths(settings),
        "components": _components(settings, channels),
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
