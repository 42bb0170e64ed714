"""The output: one JSON line per figure and per ratio on standard output, a table on standard
error.

A ratio is ``macp / baseline`` of the same metric, measured in the same run: for ``msgs_per_s``
below 1 means macp is slower; for latencies, times and memory above 1 means macp is slower
(or bigger). Only the ``main`` macp figure of a group is compared.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from bench.core import METRICS, Figure

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["emit", "print_table", "ratios", "table"]


def ratios(figures: list[Figure]) -> list[dict[str, Any]]:
    """The ``ratio_vs_<system>`` records of macp against every other system of a workload."""
    records: list[dict[str, Any]] = []
    for m in figures:
        if m.system != "macp" or not m.main:
            continue
        for b in figures:
            if (
                b.system == "macp"
                or (b.workload, b.metric, b.group) != (m.workload, m.metric, m.group)
                or b.value == 0
            ):
                continue
            records.append(
                {
                    "system": "macp",
                    "workload": m.workload,
                    "metric": f"ratio_vs_{b.system}",
                    "value": round(m.value / b.value, 3),
                    "unit": "x",
                    "variant": ":".join(p for p in (m.metric, b.variant or m.group) if p),
                    "macp_variant": m.variant,
                    "baseline_variant": b.variant,
                }
            )
    return records


def emit(records: Iterable[dict[str, Any]]) -> None:
    """Print each record as one JSON line on standard output."""
    for record in records:
        print(json.dumps(record), flush=True)


def _value(metric: str, value: float) -> str:
    if metric.endswith("_per_s"):
        return f"{value:,.0f}"
    if metric == "false_downs":
        return f"{value:g}"
    if metric.endswith(("_us", "_kib")) or metric in {"p50_ms", "p99_ms"}:
        return f"{value:,.1f}"
    return f"{value:.3f}"


def _reading(metric: str, ratio: float) -> str:
    """``0.42x (macp 2.4x slower)``: the ratio and what it means."""
    better = METRICS[metric].higher_is_better
    if ratio == 0:
        return "0x"
    factor = ratio if better else 1 / ratio
    if 0.95 <= factor <= 1.05:
        verdict = "about the same"
    elif metric.startswith("rss"):
        verdict = f"macp {1 / factor:.2f}x the memory"
    elif factor < 1:
        verdict = f"macp {1 / factor:.2f}x slower"
    else:
        verdict = f"macp {factor:.2f}x faster"
    return f"{ratio:.3f}x ({verdict})"


def table(
    figures: list[Figure], titles: dict[str, str], failures: dict[str, str], elapsed_s: float
) -> str:
    """A readable table of every figure, with macp's ratio on each baseline's row."""
    main = {(f.workload, f.metric, f.group): f for f in figures if f.system == "macp" and f.main}
    header = ("system", "variant", "metric", "value", "unit", "macp / this")
    rows: list[tuple[str, ...] | str] = []
    workloads = sorted(
        {f.workload for f in figures} | set(failures), key=lambda w: list(titles).index(w)
    )
    for workload in workloads:
        rows.append(f"{workload}  {titles.get(workload, '')}")
        if workload in failures:
            rows.append(f"  FAILED: {failures[workload].splitlines()[0]}")
        for f in figures:
            if f.workload != workload:
                continue
            reference = main.get((f.workload, f.metric, f.group))
            reading = ""
            if f.system != "macp" and reference is not None and f.value:
                reading = _reading(f.metric, reference.value / f.value)
            elif f.system == "macp" and not f.main:
                reading = "(not the main variant)"
            rows.append((f.system, f.variant, f.metric, _value(f.metric, f.value), f.unit, reading))
    widths = [len(h) for h in header]
    for row in rows:
        if isinstance(row, tuple):
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return (
            "  "
            + "  ".join(
                c.rjust(w) if i == 3 else c.ljust(w)  # numbers right-aligned
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()
        )

    out = [line(header)]
    out.extend(line(row) if isinstance(row, tuple) else row for row in rows)
    verdict = f"{len(failures)} workload(s) FAILED" if failures else "all workloads passed"
    out.append(f"{verdict}; {elapsed_s:.0f} s in all")
    return "\n".join(out)


def print_table(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
