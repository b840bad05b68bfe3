"""``make bench-cost``'s meter: the benchmark's own processes inside a measured tree (the
database session that polls for "all delivered") are left out."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from loadtest import bench_cost
from loadtest.bench_cost import Meter

#: Once told (a line on its standard input), spins for ``argv[1]`` CPU-seconds, says so, then
#: waits for its standard input to close.
SPIN = (
    "import sys, time\n"
    "sys.stdin.readline()\n"
    "end = time.process_time() + float(sys.argv[1])\n"
    "while time.process_time() < end: pass\n"
    "sys.stdout.write('spun\\n'); sys.stdout.flush()\n"  # one write: the two never interleave
    "sys.stdin.read()\n"
)


@pytest.fixture
def parent() -> Iterator[subprocess.Popen[str]]:
    """A process whose two children spin 0.3 CPU-seconds each once told to (a line on its
    standard input) and then wait; it prints their process ids, then "spun" twice."""
    script = (
        "import subprocess, sys\n"
        f"kids = [subprocess.Popen([sys.executable, '-c', {SPIN!r}, '0.3'], stdin=subprocess.PIPE,"
        " stdout=sys.stdout, text=True) for _ in range(2)]\n"
        "print(*(k.pid for k in kids), flush=True)\n"
        "sys.stdin.readline()\n"
        "for k in kids: k.stdin.write('go\\n'); k.stdin.flush()\n"
        "sys.stdin.read()\n"
        "for k in kids: k.stdin.close(); k.wait()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        # Only this tree: the test process has other children (a session's broker and
        # database, which killing all of them took down for the rest of the session).
        kids: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            kids = psutil.Process(proc.pid).children(recursive=True)
        assert proc.stdin is not None
        proc.stdin.close()  # the parent closes its children's input: they end, and it does
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for kid in kids:
            with contextlib.suppress(psutil.NoSuchProcess):
                kid.kill()


def test_the_processes_excluded_are_not_counted_in_their_tree(
    parent: subprocess.Popen[str],
) -> None:
    assert parent.stdout is not None
    _, second = (int(p) for p in parent.stdout.readline().split())
    both = Meter({"tree": [parent.pid]})
    one = Meter({"tree": [parent.pid]}, exclude={"tree": [second]})
    both.start()
    one.start()
    assert parent.stdin is not None
    parent.stdin.write("go\n")
    parent.stdin.flush()
    assert [parent.stdout.readline().strip() for _ in range(2)] == ["spun", "spun"]
    counted, less = both.stop()["tree"], one.stop()["tree"]
    # (the kernel counts CPU time in ticks of 10 ms: each child shows 0.29-0.31 s)
    assert counted >= 0.55
    assert 0.25 <= less <= counted - 0.25


def _server(cpu_s: float, sent: int, seconds: float, p99: float) -> dict[str, object]:
    return {
        "sent": sent,
        "seconds": seconds,
        "cpu": {"server": cpu_s, "broker": cpu_s / 2},
        "latency_ms": {"p50": p99 / 2, "p99": p99},
    }


def test_the_floor_rows_price_the_receiver_against_the_endpoint_that_waits_for_the_broker() -> None:
    go = {"sent": 1000, "seconds": 0.1, "cpu": {"broker": 0.01}, "client_cpu": 0.012}
    ingress = {
        "bare": _server(0.040, 1000, 0.04, 5.0),
        "acked": _server(0.060, 1000, 0.1, 10.0),
        "receiver": _server(0.080, 1000, 0.08, 12.0),
        "go_pattern": go,
        "go_paced": go,
    }
    s = bench_cost.summary([{"ingress": ingress}])
    assert (s["acked_ms"], s["acked_rps"], s["acked_p99"]) == (0.06, 10_000, 10.0)
    options = bench_cost.options(["--ingress-only"])
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
        for line in bench_cost.text(s, options).splitlines()[2:]
    }
    floor = rows["floor: bare endpoint that waits for the broker, CPU ms/request"]
    assert floor == ["0.0600", "0.0400 bare aiohttp", "1.50x (the receiver's target: 1.5)"]
    assert rows["floor: requests/s, p99 ms"] == ["10,000, 10.0", "25,000 bare", "0.40x"]
    beyond = rows["receiver CPU ms/request beyond the floor"]
    assert beyond == ["0.0200", "0.0400 bare aiohttp", "0.50x"]
