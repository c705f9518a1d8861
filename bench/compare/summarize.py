#!/usr/bin/env python3
"""Markdown tables from compare_bench's JSON (--benchmark_out=FILE --benchmark_out_format=json).

usage: summarize.py compare.json
Lookup: median ns per lookup (from the median items_per_second of the
repetitions) and each system's time as a multiple of mailsuspend's
StoreReader::lookup and of the full C API check, in the same run.
"""
import json
import sys
from collections import defaultdict

SYSTEMS = [
    ("mailsuspend_StoreReader", "mailsuspend StoreReader::lookup"),
    ("mailsuspend_check_login", "mailsuspend_check_login (C API)"),
    ("redis_GET", "Redis GET, sync, loopback"),
    ("redis_GET_pipelined64_extra", "(extra) Redis GET pipelined x64"),
    ("cdb_find", "tinycdb cdb_find"),
    ("sqlite_select", "SQLite point SELECT (WAL)"),
    ("sqlite_select_mmap_extra", "(extra) SQLite SELECT, mmap_size 4 GB"),
]


def main(path):
    data = json.load(open(path))
    lookup = defaultdict(dict)  # (n, kind) -> system -> ns
    first = defaultdict(dict)   # n -> system -> us
    memory = defaultdict(dict)  # n -> system -> (bytes, rss)
    for b in data["benchmarks"]:
        parts = b["run_name"].split("/")
        if b.get("error_occurred"):
            print(f"ERROR in {b['run_name']}: {b.get('error_message')}", file=sys.stderr)
            continue
        if parts[0] == "lookup" and b.get("aggregate_name") == "median":
            lookup[(int(parts[1]), parts[2])][parts[3]] = 1e9 / b["items_per_second"]
        elif parts[0] == "first" and b.get("aggregate_name", "median") == "median":
            first[int(parts[1])][parts[2]] = b["real_time"]
        elif parts[0] == "memory":
            memory[int(parts[1])][parts[2]] = (b.get("bytes_per_account"), b.get("rss_per_account"))

    print("### One lookup, warm process (median ns per lookup; x = multiple of mailsuspend's time)\n")
    for (n, kind) in sorted(lookup):
        row = lookup[(n, kind)]
        base = row.get("mailsuspend_StoreReader")
        capi = row.get("mailsuspend_check_login")
        print(f"**{n // 1_000_000} M accounts, {kind}s**\n")
        print("| system | ns / lookup | x StoreReader | x check_login |")
        print("|---|---:|---:|---:|")
        for key, label in SYSTEMS:
            if key not in row:
                continue
            ns = row[key]
            print(f"| {label} | {ns:,.0f} | {ns / base:.1f}x | {ns / capi:.1f}x |")
        print()

    if first:
        print("### A new process: open + first lookup (median us, forked child timing itself)\n")
        ns = sorted(first)
        print("| system | " + " | ".join(f"{n // 1_000_000} M" for n in ns) + " |")
        print("|---|" + "---:|" * len(ns))
        for key, label in SYSTEMS:
            if any(key in first[n] for n in ns):
                cells = []
                for n in ns:
                    v = first[n].get(key)
                    base = first[n].get("mailsuspend_StoreReader")
                    cells.append(f"{v:,.1f} ({v / base:.1f}x)" if v else "-")
                print(f"| {label} | " + " | ".join(cells) + " |")
        print()

    if memory:
        print("### Memory per account (bytes)\n")
        print("| accounts | system | stored bytes / account | resident / account after a full warm pass |")
        print("|---:|---|---:|---:|")
        labels = {
            "mailsuspend": ("mailsuspend", "store file", "Rss of the mapping"),
            "redis": ("Redis", "INFO used_memory growth", "used_memory_rss (whole server)"),
            "cdb": ("tinycdb", "cdb file", "Rss of the mapping"),
            "sqlite": ("SQLite", "db file + WAL", "-"),
        }
        for n in sorted(memory):
            for system, (label, what, rss_what) in labels.items():
                if system not in memory[n]:
                    continue
                b, r = memory[n][system]
                rss = f"{r:.1f} ({rss_what})" if r is not None else "-"
                print(f"| {n // 1_000_000} M | {label} | {b:.1f} ({what}) | {rss} |")
        print()


if __name__ == "__main__":
    main(sys.argv[1])
