"""How a stage connects to the database: URL, password file and TLS files, in one place.

The pool, migrations and the status command all connect through :func:`options`, so that a
CockroachDB in secure mode (the operator's ``ca.crt``, ``client.root.crt`` and
``client.root.key``) or a PostgreSQL requiring client certificates works for each of them.
"""

from __future__ import annotations

import ssl
from typing import Any

import asyncpg

from notifsvc.config import DatabaseConnection

Target = str | DatabaseConnection


def dsn_of(target: Target) -> str:
    return target if isinstance(target, str) else target.dsn


def ssl_context(conn: DatabaseConnection) -> ssl.SSLContext | None:
    """The TLS context for ``conn.sslmode`` (None: as the URL says)."""
    if conn.sslmode is None or conn.sslmode == "disable":
        return None
    ca = str(conn.ssl_ca_file) if conn.ssl_ca_file is not None else None
    context = ssl.create_default_context(cafile=ca)
    if conn.sslmode == "require":  # encrypted, server not verified (libpq's meaning)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif conn.sslmode == "verify-ca":
        context.check_hostname = False
    if conn.ssl_cert_file is not None and conn.ssl_key_file is not None:
        context.load_cert_chain(str(conn.ssl_cert_file), str(conn.ssl_key_file))
    return context


def options(target: Target) -> dict[str, Any]:
    """Keyword arguments for ``asyncpg.connect`` / ``create_pool`` besides the URL."""
    if isinstance(target, str):
        return {}
    out: dict[str, Any] = {}
    if target.password is not None:
        out["password"] = target.password.reveal()
    if target.sslmode == "disable":
        out["ssl"] = False
    elif (context := ssl_context(target)) is not None:
        out["ssl"] = context
    return out


async def connect(target: Target, **kwargs: Any) -> asyncpg.Connection:
    """One connection to ``target`` (migrations, the status command)."""
    return await asyncpg.connect(dsn_of(target), **options(target), **kwargs)
