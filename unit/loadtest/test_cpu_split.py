"""loadtest.cpu_split: perf's samples split by thread and library."""

from __future__ import annotations

import shutil
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
            "native": (3.75 + 2.72 + 1.37) / total,
            "kernel": (13.84 + 0.34) / total,
            "librdkafka threads": (7.14 + 1.63 + 1.57) / total,
            "other threads": 0.20 / total,
        }
    )


def test_a_report_without_samples_is_an_error_not_a_split_of_nothing() -> None:
    with pytest.raises(cpu_split.PerfUnavailable, match="no samples"):
        cpu_split.shares("\n# perf report header only\n")


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["python", "rdk:broker1", "rdk:main", "libuv-worker"]),
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


@pytest.mark.skipif(shutil.which("perf") is None, reason="needs perf (Debian: linux-perf)")
async def test_a_recording_perf_refused_is_an_error_with_perfs_words(tmp_path: Path) -> None:
    recording = cpu_split.PerfRecording([2**22 + 1], tmp_path / "perf.data")  # no such pid
    await recording.start()
    with pytest.raises(cpu_split.PerfUnavailable, match="perf record failed"):
        await recording.stop()
