"""Turning benchmark results into the one table people read (pure formatting)."""

from __future__ import annotations

import math
from typing import Any

from loadtest.stats import fmt, table

HEADER = ("figure", "value", "baseline", "ratio")
NAN = float("nan")


def _x(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}x"


def receiver_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    setup, rec, bare = r["setup"], r["receiver"], r["bare"]
    rl, bl = rec["latency_ms"], bare["latency_ms"]
    parts = f", {setup['partitions']} partitions" if "partitions" in setup else ""
    label = f"receiver accepted/s ({setup['workers']} worker(s), {setup['users']} users{parts})"
    return [
        (
            label,
            fmt(rec["accepted_per_s"]),
            f"{fmt(bare['accepted_per_s'])} bare aiohttp",
            _x(r["ratio"]) + " (target >= 0.6)",
        ),
        (
            "receiver latency p50 / p99 ms",
            f"{fmt(rl['p50'], 1)} / {fmt(rl['p99'], 1)}",
            f"{fmt(bl['p50'], 1)} / {fmt(bl['p99'], 1)} bare",
            "p99 target < 25 ms",
        ),
        (
            "receiver CPU ms/request (+ broker)",
            f"{rec['server_cpu_ms_per_request']:.3f} (+{rec['broker_db_cpu_ms_per_request']:.3f})",
            f"{bare['server_cpu_ms_per_request']:.3f} bare",
            _x(_div(rec["server_cpu_ms_per_request"], bare["server_cpu_ms_per_request"])),
        ),
    ]


def _div(a: float | None, b: float | None) -> float:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return NAN
    return a / b


def router_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    main = next(d for d in r["drains"] if d["queued"] == r["count"])
    base = r["baseline"]
    rows = [
        (
            f"router stored+forwarded/s ({r['count']:,} queued)",
            fmt(main["rate_per_s"]),
            f"{fmt(base['rate_per_s'])} naive (first {base['done']:,} msgs)",
            _x(_div(main["rate_per_s"], base["rate_per_s"]), 1) + " (target >= 20)",
        ),
    ]
    if "rss_mib" in main:
        m = main["rss_mib"]
        rows.append(
            (
                "router RSS MiB while draining (start -> end)",
                f"{m['start']:.0f} -> {m['end']:.0f}",
                f"peak {m['peak']:.0f}",
                f"{m['relative']:+.0%}",
            )
        )
    return rows


def notificator_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    main, base = r["main"], r["baseline"]
    label = f"webhook sends/s (concurrency {main['concurrency']}, sink {r['sink_delay_ms']:g} ms)"
    rows = [(label, fmt(main["sends_per_s"]), f"{fmt(base['sends_per_s'])} at concurrency 1")]
    ratios = [r["ratio"]]
    if "callbacks" in r:
        off = f"{fmt(main['sends_per_s'])} with them off"
        p = r["callbacks_produced"]
        label = "webhook sends/s, callback events produced (dispatcher elsewhere)"
        rows.append((label, fmt(p["sends_per_s"]), off))
        ratios.append(r["callbacks_produced_ratio"])
        c = r["callbacks"]
        label = f"webhook sends/s, dispatcher on the same cores ({c['callbacks_received']:,} sent)"
        rows.append((label, fmt(c["sends_per_s"]), off))
        ratios.append(r["callbacks_ratio"])
    for name, p in r.get("push", {}).items():
        label = f"{name} sends/s (concurrency {p['main']['concurrency']}, its fake)"
        base_rate = fmt(p["baseline"]["sends_per_s"])
        rows.append((label, fmt(p["main"]["sends_per_s"]), f"{base_rate} at concurrency 1"))
        ratios.append(p["ratio"])
    return [(*row, _x(ratio, 1)) for row, ratio in zip(rows, ratios, strict=True)]


def growth_text(r: dict[str, Any]) -> str:
    """Drain rate and router memory per backlog size."""
    rows = []
    for d in r["drains"]:
        rss = d.get("rss_mib")
        memory = "- (too short to sample)"
        if rss:
            memory = f"{rss['start']:.0f} -> {rss['end']:.0f} (peak {rss['peak']:.0f}, "
            memory += f"{rss['relative']:+.0%})"
        rows.append((f"{d['queued']:,}", fmt(d["rate_per_s"]), f"{d['seconds']:.1f}", memory))
    header = ("queued", "drained/s", "drain s", "router RSS MiB start -> end")
    return table(header, rows)


def bench_text(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    if "receiver" in results:
        rows += receiver_rows(results["receiver"])
    if "router" in results:
        rows += router_rows(results["router"])
    if "notificator" in results:
        rows += notificator_rows(results["notificator"])
    m = results["machine"]
    out = [
        f"machine: {m['cpus']} cores, {m['memory_gib']} GiB, load average "
        f"{fmt(m['load_average_1m'], 1)} -> {fmt(m.get('load_average_1m_end', NAN), 1)}; "
        f"other work used {fmt(m.get('others_cpu_pct_mean', NAN))}% of all cores on average "
        "during the run (shared machine: noisy)",
        "",
        table(HEADER, rows),
    ]
    if "router" in results and len(results["router"]["drains"]) > 1:
        out += ["", "How cost grows with the backlog (router):", "", growth_text(results["router"])]
    return "\n".join(out)


def _ms(lat: dict[str, float]) -> str:
    return (
        f"p50 {fmt(lat['p50'], 1)} ms   p95 {fmt(lat['p95'], 1)} ms   p99 {fmt(lat['p99'], 1)} ms"
    )


def load_title(result: dict[str, Any]) -> str:
    c = result["config"]
    pace = f"{c['user_rate']:g}/s each" if c["user_rate"] else "unpaced"
    return (
        f"notifsvc load test ({result['mode']}): {c['users']} users ({pace}), {c['duration']}s, "
        f"mix {c['mix']}, re-posts {c['repost_share']:.0%}"
    )


def load_text(result: dict[str, Any]) -> str:
    """The load test's one summary."""
    s = result["summary"]
    dupes = s["duplicates_delivered"]
    refused = ", ".join(f"{k}: {v:,}" for k, v in s["not_accepted"].items()) or "none"
    lines = [
        load_title(result),
        f"  accepted      {s['accepted']:,} of {s['requests']:,} requests "
        f"({fmt(s['accepted_per_s'])}/s; {s['reposts']:,} re-posts; not accepted: {refused})",
        f"  accept        {_ms(s['accept_latency_ms'])}",
        f"  delivered     {s['delivered']:,} of {s['accepted_unique']:,} UUIDs "
        f"({fmt(s['delivered_per_s'])}/s)",
        f"  end-to-end    {_ms(s['end_to_end_ms'])}   (accepted_at -> sent_at)",
        f"  lost          {s['lost']:,} (accepted, never delivered; of {s['checked']:,} checked)",
        f"  duplicates    {'n/a' if dupes is None else f'{dupes:,}'} (deliveries beyond the first"
        f"; seen by {s.get('seen_by', 'the deliveries')})",
    ]
    if s["failed"]:
        lines.append(f"  failed        {s['failed']:,} (given up by a notificator, in the DLQ)")
    if not math.isnan(s.get("others_cpu_pct_mean", NAN)):
        lines.append(
            f"  machine       other work used {s['others_cpu_pct_mean']:.0f}% of all cores "
            "on average meanwhile (noise)"
        )
    if "drained_in_s" in s:
        lines.append(f"  drained       {s['drained_in_s']:.1f}s after the load stopped")
    return "\n".join(lines)
