#!/usr/bin/env python3
"""Medians per row of a `benches/mqbench.sh` output, beside the targets of docs/BENCHMARKS.md.

    bash benches/mqbench.sh all 3 | tee bench.txt
    python3 benches/mqbench_summary.py bench.txt

Reads only the lines the script prints: `## command` headers, the JSON summaries, and the
"machine CPU per message" and "host steal" lines that follow them. Never runs anything.
"""

import json
import re
import statistics
import sys

# Row name -> (what the target is on, the target as text, a check of the row's runs).
TARGETS = {
    "async": ("msgs/s", ">= 150,000", lambda r: med(r, "tps") >= 150_000),
    "sync_flush": ("msgs/s", ">= 30,000", lambda r: med(r, "tps") >= 30_000),
    "batch": ("msgs/s", ">= 400,000", lambda r: med(r, "tps") >= 400_000),
    "drain": ("msgs/s", ">= 300,000", lambda r: med(r, "tps") >= 300_000),
    "latency": ("send→ack", "p50 <= 200 µs, p99 <= 1 ms",
                lambda r: med(r, "p50_us") <= 200 and med(r, "p99_us") <= 1000),
    "latency_busy": ("send→ack", "p50 <= 200 µs, p99 <= 1 ms",
                     lambda r: med(r, "p50_us") <= 200 and med(r, "p99_us") <= 1000),
    "e2e": ("producer→consumer", "p99 <= 2 ms", lambda r: med(r, "p99_us") <= 2000),
    "e2e_busy": ("producer→consumer", "p99 <= 2 ms", lambda r: med(r, "p99_us") <= 2000),
}


def med(runs, key):
    return statistics.median(run[key] for run in runs)


def row_of(header, busy):
    """The row a `## ...` header starts, from its command line."""
    if "mqbench floor" in header:
        return "floor_busy" if busy else "floor"
    if header.startswith("## e2e"):
        return header[3:].split()[0]
    if "mqbench consumer" in header:
        return "drain"
    if "--rate" in header:
        return "latency_busy" if busy else "latency"
    if "--mode batch" in header:
        return "batch"
    if "--duration 15" in header:
        return "sync_flush"
    return "async"


def parse(lines):
    rows, cpu, steal = {}, {}, {}
    row, busy = None, False
    for line in lines:
        if line.startswith("## start") or line.startswith("##   "):
            continue
        if line.startswith("## "):
            if "mqbench floor" in line:
                busy = "--server-busy-poll-us 500" in line
            row = row_of(line, busy)
        elif line.startswith("{") and row:
            try:
                rows.setdefault(row, []).append(json.loads(line))
            except json.JSONDecodeError:
                pass
        elif line.startswith("machine CPU per message") and row:
            cpu.setdefault(row, []).append(line.split(":")[1].strip())
        elif line.startswith("host steal") and row:
            steal.setdefault(row, []).append(line.split(":")[1].strip())
    return rows, cpu, steal


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: mqbench_summary.py OUTPUT_OF_MQBENCH_SH")
    try:
        with open(sys.argv[1], encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        sys.exit(f"cannot read {sys.argv[1]}: {e}")
    rows, cpu, steal = parse(lines)
    if not rows:
        sys.exit(f"no mqbench results in {sys.argv[1]}")
    for row, runs in rows.items():
        runs = [r for r in runs if "tps" in r]
        if not runs:
            continue
        line = f"{row:13} {len(runs)} runs  median {med(runs, 'tps'):>9,.0f} msgs/s"
        # A drained backlog's latencies are its messages' age, not a figure of the broker.
        if row != "drain":
            line += f"  p50 {med(runs, 'p50_us'):>7,.0f} µs  p99 {med(runs, 'p99_us'):>7,.0f} µs"
        if row in TARGETS:
            _, text, check = TARGETS[row]
            line += f"  target {text}: {'met' if check(runs) else 'missed'}"
        print(line)
        if row in cpu:
            print(f"{'':13} machine CPU per message: {', '.join(cpu[row])}")
        if row in steal:
            print(f"{'':13} host steal per run: {', '.join(steal[row])}")
    for line in lines:
        if line.startswith("broker RssAnon") or line.startswith("## start, empty"):
            print(line.lstrip("# "))
        elif line.startswith("##   commit-log segments"):
            print("start after a clean stop, " + line.lstrip("# "))


if __name__ == "__main__":
    main()
