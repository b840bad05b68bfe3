"""``notifsvc.process.free_port``: a port to bind soon after, out of the kernel's way."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from notifsvc import process


def test_a_free_port_is_below_the_ephemeral_range_and_can_be_bound() -> None:
    low = process._ephemeral_low()
    ports = {process.free_port() for _ in range(20)}
    assert all(low - 10_000 <= p < low for p in ports) and len(ports) > 1
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", ports.pop()))


def test_a_free_port_skips_one_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # the whole range below the ephemeral one is that single, taken port
        monkeypatch.setattr(process, "_ephemeral_low", lambda: port + 1)
        monkeypatch.setattr(process, "_BELOW", 1)
        other = process.free_port()
        assert other != port  # the kernel's choice, after 50 tries of the taken one


def test_an_unreadable_range_is_taken_for_linuxs_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(process, "EPHEMERAL_RANGE", str(tmp_path / "missing"))
    assert process._ephemeral_low() == 32_768
    (tmp_path / "range").write_text("40000\t60999\n")
    monkeypatch.setattr(process, "EPHEMERAL_RANGE", str(tmp_path / "range"))
    assert process._ephemeral_low() == 40_000
