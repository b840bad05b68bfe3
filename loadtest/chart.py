"""The load test's PNG: throughput and latency over time, accepted against delivered."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _clean(values: list[float]) -> list[float]:
    return [v if v is not None and not math.isnan(v) else float("nan") for v in values]


def draw(path: Path, series: dict[str, list[float]], summary: dict[str, Any], title: str) -> None:
    t = series["t"]
    fig, (top, bottom, cpu) = plt.subplots(
        3, 1, figsize=(11, 9), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.4]}
    )
    top.plot(
        t, series["accepted_per_s"], label="accepted (202, re-posts too) / s", color="tab:blue"
    )
    top.plot(
        t, series["delivered_per_s"], label="delivered (sent, per UUID) / s", color="tab:green"
    )
    top.set_ylabel("notifications per second")
    top.set_ylim(bottom=0)
    top.grid(alpha=0.3)
    top.legend(loc="upper right")
    top.set_title(title, fontsize=11)
    bottom.plot(t, _clean(series["accept_p50_ms"]), label="accept p50", color="tab:blue", ls=":")
    bottom.plot(t, _clean(series["accept_p99_ms"]), label="accept p99", color="tab:blue")
    bottom.plot(t, _clean(series["e2e_p50_ms"]), label="end-to-end p50", color="tab:green", ls=":")
    bottom.plot(t, _clean(series["e2e_p99_ms"]), label="end-to-end p99", color="tab:green")
    bottom.set_yscale("log")
    bottom.set_ylabel("latency, ms (log scale)")
    bottom.grid(alpha=0.3, which="both")
    bottom.legend(loc="upper right")
    cpu.plot(t, _clean(series["machine_cpu_pct"]), label="whole machine", color="tab:gray")
    cpu.plot(t, _clean(series["others_cpu_pct"]), label="other work (noise)", color="tab:red")
    cpu.set_ylim(0, 100)
    cpu.set_ylabel("CPU % of all cores")
    cpu.set_xlabel("seconds since the load started")
    cpu.grid(alpha=0.3)
    cpu.legend(loc="upper right")
    fig.text(0.01, 0.005, _footer(summary), fontsize=9, family="monospace")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _footer(s: dict[str, Any]) -> str:
    dupes = s["duplicates_delivered"]
    return (
        f"accepted {s['accepted']:,} ({s['accepted_per_s']:,.0f}/s)   "
        f"delivered {s['delivered']:,}   lost {s['lost']}   "
        f"duplicates {'n/a' if dupes is None else dupes}   "
        f"not accepted {sum(s['not_accepted'].values()):,}"
    )
