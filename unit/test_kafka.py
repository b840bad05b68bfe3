from __future__ import annotations

from notifsvc.kafka import Record, next_offsets


def rec(partition: int, offset: int, topic: str = "t") -> Record:
    return Record(topic, partition, offset, None, b"", (), 0)


def test_next_offsets_is_one_past_the_highest_per_partition() -> None:
    records = [rec(0, 5), rec(1, 2), rec(0, 7), rec(0, 6), rec(1, 3, "u")]
    assert next_offsets(records) == {("t", 0): 8, ("t", 1): 3, ("u", 1): 4}


def test_header_lookup() -> None:
    r = Record("t", 0, 0, None, b"", (("a", b"1"), ("b", b"2")), 0)
    assert r.header("b") == b"2" and r.header("c") is None
