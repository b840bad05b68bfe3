"""``loadtest.bare --acknowledged``, the benchmark's floor for the receiver, does what it
is priced as: each body reaches the receiver's topic, keyed by its uuid, before the 202."""

from __future__ import annotations

import uuid

import orjson
from aiohttp.test_utils import TestClient, TestServer

from integration.helpers import read_topic
from loadtest import bare
from notifsvc import topics
from notifsvc.config import Settings


async def test_the_acknowledged_bare_endpoint_writes_each_body_before_its_202(
    settings: Settings,
) -> None:
    bodies = [orjson.dumps({"uuid": str(uuid.uuid4()), "txt": f"n{i}"}) for i in range(3)]
    async with TestClient(TestServer(bare.create_app(settings))) as client:
        for body in bodies:
            response = await client.post(
                "/notification", data=body, headers={"Content-Type": "application/json"}
            )
            assert response.status == 202
            answer = await response.json()
            assert answer == {"uuid": orjson.loads(body)["uuid"], "status": "accepted"}
    records = await read_topic(settings, topics.outstanding(settings), len(bodies))
    written = {r.key: r.value for r in records}
    assert written == {orjson.loads(b)["uuid"].encode(): b for b in bodies}


async def test_the_bare_endpoint_writes_nothing() -> None:
    app = bare.create_app()
    assert bare.PRODUCER not in app
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/notification", json={"uuid": "u"})
        assert response.status == 202
        assert await response.json() == {"uuid": "u", "status": "accepted"}
