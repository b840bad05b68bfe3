"""The operations routes' part of the OpenAPI document (notifsvc.api.operations): the same
parameters, values and answer as the code behind them (which integration/test_operations.py
and the schemathesis run of integration/test_receiver_schema.py exercise)."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import jsonschema_rs
from hypothesis import given
from hypothesis import strategies as st

from notifsvc import channels
from notifsvc.api import operations
from notifsvc.api.validation import Validator
from notifsvc.config import Secret, Settings
from notifsvc.db import queries
from notifsvc.model import Priority, Reason, State
from notifsvc.openapi import document

SETTINGS = Settings(channels=frozenset({"log"}))
DOC = document(SETTINGS, Validator.from_settings(SETTINGS), extra=[operations.openapi])
LIST = DOC["paths"]["/notifications"]["get"]


def test_the_routes_join_the_paths_they_share() -> None:
    paths = DOC["paths"]
    assert set(paths["/notifications"]) == {"get", "post"}
    assert set(paths["/notification/{uuid}"]) == {"get", "delete"}
    assert set(paths["/notification/{uuid}/retry"]) == {"post"}


def test_the_list_takes_the_parameters_the_parser_reads() -> None:
    assert [p["name"] for p in LIST["parameters"]] == list(queries.PARAMETERS)
    enums = {p["name"]: p["schema"].get("enum") for p in LIST["parameters"]}
    assert enums["state"] == [s.value for s in State]
    assert enums["channel"] == sorted(channels.REGISTRY)
    assert enums["priority"] == [p.value for p in Priority]
    assert enums["reason"] == [r.value for r in Reason]


def test_the_state_schema_holds_every_field_of_the_view() -> None:
    columns = queries.COLUMNS.replace("recipient", "to").replace("body", "txt").split(", ")
    state = DOC["components"]["schemas"]["State"]
    assert set(state["properties"]) == {*columns, "reason"}
    assert set(state["required"]) == set(state["properties"])


def test_keyed_documents_answer_401_and_429_on_the_operations() -> None:
    keyed = Settings(channels=frozenset({"log"}), api_keys=(Secret("k"),))
    doc = document(keyed, Validator.from_settings(keyed), extra=[operations.openapi])
    for path, method in (
        ("/notifications", "get"),
        ("/notification/{uuid}", "delete"),
        ("/notification/{uuid}/retry", "post"),
    ):
        assert {"401", "429", "422", "503"} <= set(doc["paths"][path][method]["responses"])


def parameter(name: str) -> dict[str, Any]:
    [found] = [p for p in LIST["parameters"] if p["name"] == name]
    schema: dict[str, Any] = found["schema"]
    return schema


zones = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
times = st.datetimes(timezones=zones).map(lambda d: d.isoformat(timespec="microseconds"))


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "state": st.sampled_from(parameter("state")["enum"]),
            "channel": st.sampled_from(parameter("channel")["enum"]),
            "priority": st.sampled_from(parameter("priority")["enum"]),
            "reason": st.sampled_from(parameter("reason")["enum"]),
            "since": times,
            "until": times,
            "limit": st.integers(1, queries.MAX_LIMIT).map(str),
        },
    )
)
def test_what_the_document_allows_the_parser_reads(query: dict[str, str]) -> None:
    for name, value in query.items():
        schema = parameter(name)
        typed = int(value) if schema["type"] == "integer" else value
        assert jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(typed)
    got = queries.parse(query.items(), channels.REGISTRY)
    assert got.limit == int(query.get("limit", queries.DEFAULT_LIMIT))
