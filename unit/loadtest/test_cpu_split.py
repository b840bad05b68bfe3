"""loadtest.cpu_split: perf's samples split by thread and library."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest import cpu_split

#: ``perf report -q -t '|' --sort comm,dso -g none`` on a receiver during make bench-cost
#: (2026-12-04; abridged: the smallest rows left out, so the shares do not add up to 100).
REPORT = """\
 61.84% |python       |libpython3.11.so.1.0                        
 13.84% |python       |[kernel.kallsyms]                           
 7.14%  |rdk:broker111|[kernel.kallsyms]                           
 3.75%  |python       |libc.so.6                                   
 2.72%  |python       |loop.cpython-311-x86_64-linux-gnu.so        
 1.63%  |rdk:broker111|libc.so.6                                   
 1.57%  |rdk:broker111|librdkafka-0cb94173.so.1                    
 1.37%  |python       |librdkafka-0cb94173.so.1                    
 0.34%  |python       |[vdso]                                      
 0.20%  |libuv-worker |libc.so.6                                   

"""  # noqa: W291 (perf pads its columns)


def test_a_report_is_split_into_the_parts_by_thread_and_library() -> None:
    got = cpu_split.shares(REPORT)
    total = 61.84 + 13.84 + 7.14 + 3.75 + 2.72 + 1.63 + 1.57 + 1.37 + 0.34 + 0.20
    assert got == pytest.approx(
        {
            "interpreter": 61.84 / total,
            "native": (3.75 + 2.72 + 1.37 + 0.20) / total,  # a libuv worker's libc too
            "kernel": (13.84 + 0.34) / total,
            "librdkafka threads": (7.14 + 1.63 + 1.57) / total,
        }
    )


def test_the_main_thread_counts_whatever_the_interpreter_is_called() -> None:
    """A server started as python3 (or python3.11) names its main thread so."""
    for name in ("python", "python3", "python3.11", "notifsvc"):
        assert cpu_split.part(name, "libpython3.11.so.1.0") == "interpreter"
        assert cpu_split.part(name, "[kernel.kallsyms]") == "kernel"
    assert cpu_split.part("rdk:broker1", "libpython3.11.so.1.0") == "librdkafka threads"


def test_without_the_kernels_samples_there_is_no_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """perf drops kernel samples for an unprivileged user at paranoid 2: the kernel's share
    would read 0 and the others too high."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    paranoid = tmp_path / "perf_event_paranoid"
    for value, allowed in (("2\n", False), ("1\n", True), ("-1\n", True), ("x", False)):
        paranoid.write_text(value)
        assert cpu_split.may_sample_the_kernel(paranoid) is allowed, value
    assert not cpu_split.may_sample_the_kernel(tmp_path / "missing")


def test_a_report_without_samples_is_an_error_not_a_split_of_nothing() -> None:
    with pytest.raises(cpu_split.PerfUnavailable, match="no samples"):
        cpu_split.shares("\n# perf report header only\n")


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["python", "python3", "rdk:broker1", "rdk:main", "libuv-worker"]),
            st.sampled_from(["libpython3.11.so.1.0", "[kernel.kallsyms]", "[vdso]", "libc.so.6"]),
            st.integers(1, 10_000),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_shares_always_add_up_to_one_and_keep_every_part(
    rows: list[tuple[str, str, int]],
) -> None:
    report = "\n".join(f" {n / 100:.2f}% |{comm:13s}|{dso}" for comm, dso, n in rows)
    got = cpu_split.shares(report)
    assert list(got) == list(cpu_split.PARTS)
    assert sum(got.values()) == pytest.approx(1.0)
    rdk = sum(n for comm, _, n in rows if comm.startswith("rdk:")) / sum(n for *_, n in rows)
    assert got["librdkafka threads"] == pytest.approx(rdk)


async def test_without_perf_recording_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    recording = cpu_split.PerfRecording([1], tmp_path / "perf.data")
    with pytest.raises(cpu_split.PerfUnavailable, match="not installed"):
        await recording.start()


async def test_a_recording_that_would_miss_the_kernel_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: "/usr/bin/perf")
    monkeypatch.setattr(cpu_split, "may_sample_the_kernel", lambda: False)
    recording = cpu_split.PerfRecording([1], tmp_path / "perf.data")
    with pytest.raises(cpu_split.PerfUnavailable, match="may not sample the kernel"):
        await recording.start()
    assert recording._proc is None


@pytest.mark.skipif(shutil.which("perf") is None, reason="needs perf (Debian: linux-perf)")
async def test_a_recording_perf_refused_is_an_error_with_perfs_words(tmp_path: Path) -> None:
    recording = cpu_split.PerfRecording([2**22 + 1], tmp_path / "perf.data")  # no such pid
    await recording.start()
    with pytest.raises(cpu_split.PerfUnavailable, match="perf record failed"):
        await recording.stop()


@pytest.mark.skipif(
    shutil.which("perf") is None or not cpu_split.may_sample_the_kernel(),
    reason="needs perf (Debian: linux-perf), allowed to sample the kernel",
)
async def test_a_cancelled_recording_leaves_no_perf_running(tmp_path: Path) -> None:
    recording = cpu_split.PerfRecording([os.getpid()], tmp_path / "perf.data")
    await recording.start()
    proc = recording._proc
    assert proc is not None
    await recording.cancel()
    assert proc.returncode is not None  # reaped, not left to outlive the benchmark
    with pytest.raises(cpu_split.PerfUnavailable, match="not recording"):
        await recording.stop()


#: A process that, like a stuck perf, does not exit on SIGINT.
_STUCK = (
    "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN);"
    " print('ready', flush=True); time.sleep(60)"
)


@pytest.fixture
async def stuck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[cpu_split.PerfRecording, asyncio.subprocess.Process]:
    """A recording whose perf ignores SIGINT (once it does), given 0.5 s to stop."""
    monkeypatch.setattr(cpu_split, "PERF_SECONDS", 0.5)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _STUCK, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"ready\n"
    recording = cpu_split.PerfRecording([1], tmp_path / "perf.data")
    recording._proc = proc
    return recording, proc


async def test_a_perf_that_does_not_stop_is_killed_and_said_so(
    stuck: tuple[cpu_split.PerfRecording, asyncio.subprocess.Process],
) -> None:
    recording, proc = stuck
    with pytest.raises(cpu_split.PerfUnavailable, match=r"perf did not stop within 0\.5s"):
        await recording.stop()
    assert proc.returncode == -signal.SIGKILL  # killed and reaped, not left running


async def test_cancelling_a_stuck_perf_kills_it_and_raises_nothing(
    stuck: tuple[cpu_split.PerfRecording, asyncio.subprocess.Process],
) -> None:
    """A failed run's own error is the one to see, not perf's."""
    recording, proc = stuck
    await recording.cancel()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.skipif(shutil.which("perf") is None, reason="needs perf (Debian: linux-perf)")
async def test_a_report_perf_cannot_read_is_an_error_with_perfs_words(tmp_path: Path) -> None:
    data = tmp_path / "perf.data"
    data.write_bytes(b"not a perf file")
    with pytest.raises(cpu_split.PerfUnavailable, match=r"perf report failed \(exit [1-9][0-9]*\)"):
        await cpu_split._report(data)
