"""Property: whatever a client sends, the receiver answers 202 or a well-formed 4xx, never 5xx."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from integration.helpers import stage_env
from notifsvc.config import Settings

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "uuid": st.uuids().map(str) | json_values,
        "destination": st.sampled_from(["log", "LOG", "webhook", "email", "fax", ""]) | json_values,
        "to": st.text(max_size=60) | json_values,
        "txt": st.text(max_size=200) | json_values,
        "subject": st.text(max_size=40) | json_values,
        "priority": st.sampled_from(["high", "normal", "low", "urgent"]) | json_values,
    },
)
bodies = (
    fields.map(orjson.dumps)
    | json_values.map(orjson.dumps)
    | st.lists(fields, max_size=3).map(orjson.dumps)
    | st.binary(max_size=300)
)
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", ""]
)
paths = st.sampled_from(["/notification", "/notifications"])


@pytest.fixture
def receiver(settings: Settings) -> Iterator[str]:
    """A receiver process (``notifsvc receiver``) on the session's broker and database."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "notifsvc", "receiver"],
        env=stage_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{settings.http_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, "receiver exited"
                assert time.monotonic() < deadline, "receiver did not come up"
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def send(url: str, body: bytes, content_type: str) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, data=body, method="POST")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get_content_type()
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get_content_type()


@hsettings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, content_type=content_types, path=paths)
@example(
    body=b'{"uuid": 1' + b"0" * 40 + b"}", content_type="application/json", path="/notification"
)
@example(body=b"\xff\xfe{", content_type="application/json", path="/notifications")
def test_any_input_gets_202_or_a_well_formed_4xx(
    receiver: str, body: bytes, content_type: str, path: str
) -> None:
    status, payload, kind = send(receiver + path, body, content_type)
    assert status < 500, (status, payload)
    if status >= 400:
        assert kind == "application/problem+json"
        problem = orjson.loads(payload)
        assert problem["status"] == status and problem["detail"]
    else:
        assert status in (200, 202)
