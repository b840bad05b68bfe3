"""The pipeline over real TLS: PostgreSQL with ``ssl=on`` and client-certificate auth, and
the Kafka broker behind a TLS terminator that requires client certificates (mTLS), with a
CA made in the test (trustme). A wrong CA or a missing client certificate is refused with a
message that says so, at start-up, instead of being retried silently.

SASL cannot be served by the embedded broker; its settings mapping is unit-tested.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
import trustme

from integration.helpers import deliveries, eventually, notification, running
from notifsvc import channels, kafka, topics
from notifsvc.channels.log import LogChannel, LogSettings
from notifsvc.config import DatabaseConnection, KafkaConnection, Secret, Settings
from notifsvc.db.migrate import migrate
from notifsvc.db.store import Store, StoreMisconfigured
from notifsvc.dev.broker import TansuBroker
from notifsvc.notificator import Notificator
from notifsvc.process import free_port
from notifsvc.receiver import ReceiverServer
from notifsvc.router import Router


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path  # CN=postgres: PostgreSQL's cert auth maps it to that user
    client_key: Path
    other_ca: Path  # trusts nothing of the above


@pytest.fixture(scope="module")
def certs() -> Iterator[Certs]:
    folder = Path(tempfile.mkdtemp(prefix="notifsvc-tls-"))
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("postgres", common_name="postgres")
    paths = Certs(*(folder / n for n in ("ca", "scrt", "skey", "ccrt", "ckey", "other")))
    ca.cert_pem.write_to_path(str(paths.ca))
    server.cert_chain_pems[0].write_to_path(str(paths.server_cert))
    server.private_key_pem.write_to_path(str(paths.server_key))
    client.cert_chain_pems[0].write_to_path(str(paths.client_cert))
    client.private_key_pem.write_to_path(str(paths.client_key))
    other.cert_pem.write_to_path(str(paths.other_ca))
    yield paths
    shutil.rmtree(folder, ignore_errors=True)


def unix_socket(dsn: str) -> tuple[str, str]:
    """The socket path and database name of an embedded-PostgreSQL URL."""
    url = urlsplit(dsn)
    query = dict(parse_qsl(url.query))
    return f"{query['host']}/.s.PGSQL.{query.get('port', '5432')}", url.path.lstrip("/")


def database(proxy: TlsTerminator, name: str, certs: Certs) -> DatabaseConnection:
    return DatabaseConnection(
        dsn=f"postgresql://postgres@localhost:{proxy.port}/{name}",
        sslmode="verify-full",
        ssl_ca_file=certs.ca,
        ssl_cert_file=certs.client_cert,
        ssl_key_file=certs.client_key,
    )


class TlsTerminator:
    """An asyncio TLS server in front of a plaintext server; requires client certificates.

    With ``postgres=True`` it first answers PostgreSQL's SSLRequest with ``S`` (TLS is
    negotiated inside that protocol), as a PostgreSQL with ``ssl=on`` and ``cert`` auth
    would; the embedded PostgreSQL build has no TLS of its own."""

    def __init__(
        self, certs: Certs, upstream: Callable[[], Awaitable[Streams]], *, postgres: bool = False
    ) -> None:
        self.port = free_port()
        self.upstream = upstream
        self.postgres = postgres
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca))
        self.context.load_cert_chain(str(certs.server_cert), str(certs.server_key))
        # PostgreSQL asks for a certificate and refuses a login without one (``cert`` auth);
        # the Kafka terminator refuses the handshake itself.
        self.context.verify_mode = ssl.CERT_OPTIONAL if postgres else ssl.CERT_REQUIRED
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TlsTerminator:
        tls = None if self.postgres else self.context
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port, ssl=tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.postgres:
                request = await reader.readexactly(8)
                assert request == SSL_REQUEST, request
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(self.context)
                if writer.get_extra_info("peercert") is None:
                    await refuse_like_postgres(reader, writer)
                    return
            up_reader, up_writer = await self.upstream()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            writer.close()
            return
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))


async def refuse_like_postgres(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the startup message and answer as PostgreSQL does for ``cert`` auth without a
    client certificate: FATAL 28000."""
    length = int.from_bytes(await reader.readexactly(4), "big")
    await reader.readexactly(length - 4)
    fields = b"SFATAL\0VFATAL\0C28000\0Mconnection requires a valid client certificate\0\0"
    writer.write(b"E" + (len(fields) + 4).to_bytes(4, "big") + fields)
    await writer.drain()
    writer.close()


#: PostgreSQL's SSLRequest: length 8, code 80877103.
SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def tls_broker(
    certs: Certs, tmp_path: Path
) -> AsyncIterator[tuple[TansuBroker, TlsTerminator]]:
    plain = free_port()
    terminator = TlsTerminator(certs, lambda: asyncio.open_connection("127.0.0.1", plain))
    broker = TansuBroker(
        tmp_path / "tansu.log", port=plain, advertised=f"localhost:{terminator.port}"
    )
    async with terminator:
        await asyncio.to_thread(broker.start)
        try:
            yield broker, terminator
        finally:
            await asyncio.to_thread(broker.stop)


def kafka_tls(terminator: TlsTerminator, certs: Certs, **changes: object) -> KafkaConnection:
    conn = KafkaConnection(
        bootstrap=f"localhost:{terminator.port}",
        security_protocol="SSL",
        ssl_ca_file=certs.ca,
        ssl_cert_file=certs.client_cert,
        ssl_key_file=certs.client_key,
    )
    return dataclasses.replace(conn, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def tls_postgres(settings: Settings, certs: Certs) -> AsyncIterator[DatabaseConnection]:
    """The test's database, reachable only over TLS with a client certificate."""
    path, name = unix_socket(settings.dsn)
    proxy = TlsTerminator(certs, lambda: asyncio.open_unix_connection(path), postgres=True)
    async with proxy:
        yield database(proxy, name, certs)


def tls_settings(
    settings: Settings, kafka_conn: KafkaConnection, db: DatabaseConnection
) -> Settings:
    return dataclasses.replace(
        settings,
        kafka_bootstrap=kafka_conn.bootstrap,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=kafka_conn.ssl_ca_file,
        kafka_ssl_cert_file=kafka_conn.ssl_cert_file,
        kafka_ssl_key_file=kafka_conn.ssl_key_file,
        database_url=Secret(db.dsn),
        database_sslmode=db.sslmode,
        database_ssl_ca_file=db.ssl_ca_file,
        database_ssl_cert_file=db.ssl_cert_file,
        database_ssl_key_file=db.ssl_key_file,
    )


async def test_the_pipeline_runs_end_to_end_over_mutual_tls(
    settings: Settings,
    certs: Certs,
    tls_postgres: DatabaseConnection,
    tls_broker: tuple[TansuBroker, TlsTerminator],
) -> None:
    secure = tls_settings(settings, kafka_tls(tls_broker[1], certs), tls_postgres)
    await migrate(secure.database)
    names = topics.all_topics(secure, list(channels.REGISTRY))
    await asyncio.to_thread(kafka.create_topics, secure, names)
    body = notification("log", txt="over TLS")
    base = f"http://{secure.http_host}:{secure.http_port}"
    async with (
        running(ReceiverServer(secure)),
        running(Router(secure)),
        running(Notificator(secure, LogChannel(secure))),
        aiohttp.ClientSession(base) as api,
    ):
        async with api.post("/notification", json=body) as resp:
            assert resp.status == 202, await resp.text()
        path = secure.section(LogSettings).path
        assert path is not None

        async def delivered() -> bool:
            return deliveries(path)[str(body["uuid"])] == 1

        await eventually(delivered)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"ssl_ca_file": "other"}, "not trusted"),  # the server's certificate is not trusted
        ({"ssl_cert_file": None, "ssl_key_file": None}, "certificate"),  # no client cert
    ],
)
async def test_a_refused_database_tls_setup_is_a_stage_error(
    certs: Certs, tls_postgres: DatabaseConnection, change: dict[str, object], problem: str
) -> None:
    resolved = {k: certs.other_ca if v == "other" else v for k, v in change.items()}
    store = Store(dataclasses.replace(tls_postgres, **resolved))  # type: ignore[arg-type]
    await store.start()
    try:
        with pytest.raises(StoreMisconfigured, match=problem):
            await store.check_schema()
    finally:
        await store.stop()


async def test_an_untrusted_broker_certificate_is_a_stage_error(
    settings: Settings, certs: Certs, tls_broker: tuple[TansuBroker, TlsTerminator]
) -> None:
    wrong = kafka_tls(tls_broker[1], certs, ssl_ca_file=certs.other_ca)
    secure = dataclasses.replace(
        settings,
        kafka_bootstrap=wrong.bootstrap,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=certs.other_ca,
        kafka_ssl_cert_file=certs.client_cert,
        kafka_ssl_key_file=certs.client_key,
    )
    with pytest.raises(kafka.KafkaStageError, match=r"(?i)certificate"):
        await asyncio.to_thread(kafka.missing_topics, secure, ["x"], timeout=5)
