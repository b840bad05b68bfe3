"""The pipeline's own headers never stop a stage, whatever bytes a foreign writer put there."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from notifsvc import headers
from notifsvc.kafka import Record


def with_header(name: str, value: bytes) -> Record:
    return Record("t", 0, 0, None, b"", ((name, value),), 0)


@given(st.binary(max_size=64))
def test_any_bytes_read_as_an_integer_in_range_or_the_default(raw: bytes) -> None:
    value = headers.read_int(with_header(headers.ATTEMPTS, raw), headers.ATTEMPTS, high=99)
    assert 0 <= value <= 99


@given(st.binary(max_size=64) | st.sampled_from([b"nan", b"inf", b"-1e999", b"1e999", b"\xff"]))
def test_any_bytes_read_as_a_finite_number_in_range(raw: bytes) -> None:
    record = with_header(headers.NOT_BEFORE, raw)
    value = headers.read_float(record, headers.NOT_BEFORE, default=1.0, low=0.0, high=10.0)
    assert 0.0 <= value <= 10.0


def test_well_formed_values_are_read_as_written() -> None:
    assert headers.read_int(with_header(headers.ATTEMPTS, b"4"), headers.ATTEMPTS) == 4
    record = with_header(headers.NOT_BEFORE, b"12.5")
    assert headers.read_float(record, headers.NOT_BEFORE, default=0, low=0, high=100) == 12.5
    assert headers.read_int(with_header("other", b"4"), headers.ATTEMPTS, default=7) == 7
    assert headers.read_int(with_header(headers.ATTEMPTS, b"abc"), headers.ATTEMPTS) == 0
    assert headers.read_int(with_header(headers.ATTEMPTS, b"1e99"), headers.ATTEMPTS) == 1_000_000
