#!/usr/bin/env python3
"""Markdown tables from compare_bench's JSON (--benchmark_out=FILE --benchmark_out_format=json).

usage: summarize.py compare.json
Lookup, per system, medians of the repetitions, per lookup:
  wall   wall-clock ns (includes waiting for a CPU on a loaded machine)
  cpu    the calling process's CPU ns, plus for Redis the server's CPU ns
         (INFO cpu before/after): a lower bound that load does not inflate
and each as a multiple of mailsuspend's StoreReader::lookup and of the full
C API check (mailsuspend_check_login) in the same run.
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
            per = b.get("lookups_per_iteration", 1) or 1
            scale = {"ns": 1, "us": 1e3, "ms": 1e6}[b["time_unit"]]
            wall = b["real_time"] * scale / per
            cpu = b["cpu_time"] * scale / per + b.get("server_cpu_ns", 0)
            lookup[(int(parts[1]), parts[2])][parts[3]] = (wall, cpu, b.get("server_cpu_ns"))
        elif parts[0] == "first" and b.get("aggregate_name", "median") == "median":
            first[int(parts[1])][parts[2]] = (b["real_time"], b.get("cpu_us"))
        elif parts[0] == "memory":
            memory[int(parts[1])][parts[2]] = (b.get("bytes_per_account"), b.get("rss_per_account"))

    print("### One lookup, warm process (medians, ns per lookup; x = multiple of mailsuspend's time)\n")
    for (n, kind) in sorted(lookup):
        row = lookup[(n, kind)]
        bw, bc, _ = row["mailsuspend_StoreReader"]
        cw, cc, _ = row["mailsuspend_check_login"]
        print(f"**{n // 1_000_000} M accounts, {'hits' if kind == 'hit' else 'misses'}**\n")
        print("| system | wall ns | CPU ns (Redis: client + server) | wall x StoreReader | CPU x StoreReader | wall x check_login | CPU x check_login |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for key, label in SYSTEMS:
            if key not in row:
                continue
            w, c, server = row[key]
            cpu = f"{c:,.0f}" + (f" ({c - server:,.0f} + {server:,.0f})" if server is not None else "")
            print(f"| {label} | {w:,.0f} | {cpu} | {w / bw:.1f}x | {c / bc:.1f}x | {w / cw:.1f}x | {c / cc:.1f}x |")
        print()

    if first:
        print("### A new process: open + first lookup (exec'd child timing itself from main; medians, us; wall / CPU of the child)\n")
        ns = sorted(first)
        print("| system | " + " | ".join(f"{n // 1_000_000} M wall | {n // 1_000_000} M CPU" for n in ns) + " |")
        print("|---|" + "---:|---:|" * len(ns))
        for key, label in SYSTEMS:
            if any(key in first[n] for n in ns):
                cells = []
                for n in ns:
                    if key not in first[n]:
                        cells += ["-", "-"]
                        continue
                    w, c = first[n][key]
                    bw, bc = first[n]["mailsuspend_StoreReader"]
                    cells.append(f"{w:,.1f} ({w / bw:.1f}x)")
                    cells.append(f"{c:,.1f} ({c / bc:.1f}x)" if c is not None else "-")
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
