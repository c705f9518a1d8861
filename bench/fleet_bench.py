#!/usr/bin/env python3
"""The benchmarks of issue 15: a real redis-server on loopback and real
`mailsuspend sync` agents, set up by the fleet tests' harness
(tests/fleet/fleetenv.py) on a port of its own (--port, not the tests' 16379,
so no integration lock is needed).

  latency  10 nodes; --writes `mailsuspend suspend` runs on node n0, one at a
           time, each after a random pause of 0-250 ms (so writes fall at every
           point of the agent's 250 ms XREAD BLOCK); for each of the 9 other
           nodes, the time until its store enforces the suspension, read as
           Dovecot reads it: the C API (libmailsuspend_core.so, one long-lived
           handle per node, mailsuspend_change_stamp then
           mailsuspend_check_service(target, "imap") on every change, polled
           every 0.5 ms).  Timed from the CLI's start and from its exit (the
           write acknowledged).
  resync   --targets (1 M) suspended on node "pub" by `mailsuspend batch` (100 k
           lines a run) with its agent stopped; the agent started: time and CPU
           until the snapshot holds them all (the publish); then a fresh node's
           agent: time and CPU until it logs "resynchronised N target(s)".
           Redis INFO used_memory before and after, and MEMORY USAGE of the
           stream and of the snapshot hash: bytes per target.
  cpu      2 nodes; idle agents for --idle s (the baseline), then --rate
           changes/s on node a for --seconds (`mailsuspend batch` of rate/10
           lines every 100 ms, suspend and unsuspend in turn over --pool
           accounts): the CPU time (/proc/PID/stat utime + stime) of a's agent
           (publishing) and b's (applying) until b has the last change.  Then
           the same drive for --strace-seconds with `strace -c -f` on both
           agents: system calls per change.

Every part prints the load average it ran under.  Run as root from the build
dir, e.g.:
    python3 ../bench/fleet_bench.py                       # every part
    python3 ../bench/fleet_bench.py --parts latency --writes 300
    python3 ../bench/fleet_bench.py --parts resync --targets 1000000
"""
import argparse
import ctypes
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fleet"))
import fleetenv  # noqa: E402
from fleetenv import PREFIX, wait_until  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def say(text):
    print(text, flush=True)


def load():
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def make_fleet(names, capacity):
    """A fleetenv.Fleet whose stores are sized for capacity targets."""
    fleetenv.CONF = re.sub(r"capacity = \d+;", f"capacity = {capacity};", fleetenv.CONF)
    return fleetenv.Fleet(names)


def add_stopped_node(fleet, name):
    node = fleetenv.Node(fleet.root, name, fleet.key)
    fleet.nodes[name] = node
    return node


def wait_for_heartbeats(fleet, count):
    wait_until(lambda: len(fleet.redis.cli("SMEMBERS", f"{PREFIX}:nodes").split()) >= count,
               f"{count} agents' heartbeats", timeout=60)


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (/proc/PID/stat, clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Reader:
    """A long-lived C API handle on one node's store, as a Dovecot process holds one."""

    class Result(ctypes.Structure):
        _fields_ = [("verdict", ctypes.c_int), ("rest", ctypes.c_char * 1024)]

    def __init__(self, lib, conf):
        self.lib = lib
        error = ctypes.c_char_p()
        self.handle = lib.mailsuspend_open(conf.encode(), None, None, ctypes.byref(error))
        if not self.handle or error.value:
            raise AssertionError(f"mailsuspend_open({conf}): {error.value}")
        self.stamp = None
        self.result = Reader.Result()

    def changed(self):
        stamp = self.lib.mailsuspend_change_stamp(self.handle)
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        return True

    def suspended(self, target):
        self.lib.mailsuspend_check_service(self.handle, target.encode(), b"imap", None, ctypes.byref(self.result))
        return self.result.verdict == 1


def open_core(path):
    lib = ctypes.CDLL(path)
    lib.mailsuspend_open.restype = ctypes.c_void_p
    lib.mailsuspend_open.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                                     ctypes.POINTER(ctypes.c_char_p)]
    lib.mailsuspend_change_stamp.restype = ctypes.c_ulonglong
    lib.mailsuspend_change_stamp.argtypes = [ctypes.c_void_p]
    lib.mailsuspend_check_service.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                              ctypes.c_void_p]
    return lib


def wait_enforced(readers, target, since, timeout=20.0):
    """Polls every reader until it enforces target: seconds after since, per reader."""
    seen = {}
    while len(seen) < len(readers):
        now = time.monotonic()
        for k, r in enumerate(readers):
            if k not in seen and r.changed() and r.suspended(target):
                seen[k] = now - since
        if now - since > timeout:
            raise AssertionError(f"{target}: enforced on {len(seen)} of {len(readers)} nodes after {timeout} s")
        time.sleep(0.0005)
    return [seen[k] for k in range(len(readers))]


def part_latency(args):
    names = [f"n{i}" for i in range(args.nodes)]
    fleet = make_fleet(names, capacity=max(1000, 2 * args.writes))
    try:
        wait_for_heartbeats(fleet, args.nodes)
        lib = open_core(args.core)
        writer = fleet.nodes["n0"]
        readers = [Reader(lib, fleet.nodes[n].conf) for n in names[1:]]
        say(f"latency: {args.nodes} nodes, {args.writes} writes on n0; {load()}")
        from_start, from_ack, last_start = [], [], []
        for i in range(args.writes + 1):
            time.sleep(random.uniform(0, 0.25))
            target = f"lat{i}@bench.example"
            t0 = time.monotonic()
            writer.cli("suspend", target, "--service", "imap")
            t1 = time.monotonic()
            lat = wait_enforced(readers, target, t0)
            if i == 0:
                continue  # the first write warms the page cache
            from_start += lat
            from_ack += [x - (t1 - t0) for x in lat]
            last_start.append(max(lat))
        ms = lambda v: "%.0f" % (v * 1000)  # noqa: E731
        say(f"  per node ({len(from_start)}): from the CLI's start p50 {ms(pct(from_start, 50))} ms, "
            f"p99 {ms(pct(from_start, 99))} ms, max {ms(max(from_start))} ms; "
            f"from its exit p50 {ms(pct(from_ack, 50))} ms, p99 {ms(pct(from_ack, 99))} ms")
        say(f"  every node ({len(last_start)} writes, the last of 9): p50 {ms(pct(last_start, 50))} ms, "
            f"p99 {ms(pct(last_start, 99))} ms, max {ms(max(last_start))} ms")
        say(f"  {load()}")
    finally:
        fleet.stop()


class LogTail:
    """Reads an agent's log incrementally (a resync of 1 M logs 1 M lines)."""

    def __init__(self, path):
        self.path, self.offset, self.applied = path, 0, 0
        self.lines = []

    def poll(self):
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            if "mailsuspend sync: applied " in line:
                self.applied += 1
            else:
                self.lines.append(line)

    def find(self, pattern):
        self.poll()
        for line in self.lines:
            m = re.search(pattern, line)
            if m:
                return m
        return None


def used_memory(redis):
    return int(re.search(r"used_memory:(\d+)", redis.cli("INFO", "memory")).group(1))


def load_targets(node, count):
    """count targets suspended on node by `mailsuspend batch`, 100 k lines a run."""
    t0 = time.monotonic()
    for first in range(0, count, 100_000):
        lines = "".join(
            json.dumps({"op": "suspend", "target": f"u{i}@d{i % 5000}.example", "services": ["imap", "pop3"],
                        "reason": "unpaid invoice"}) + "\n" for i in range(first, min(count, first + 100_000)))
        out = subprocess.run([fleetenv.PATHS["cli"], "--config", node.conf, "batch"], input=lines,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise AssertionError(f"batch: {out.stdout}{out.stderr}")
    return time.monotonic() - t0


def part_resync(args):
    n = args.targets
    fleet = make_fleet([], capacity=int(n * 1.1))
    try:
        before = used_memory(fleet.redis)
        pub = add_stopped_node(fleet, "pub")
        say(f"resync: {n} targets; {load()}")
        say(f"  loaded by `mailsuspend batch` (agent stopped): {load_targets(pub, n):.1f} s")
        t0, redis0 = time.monotonic(), cpu_seconds(fleet.redis.proc.pid)
        pub.start_agent()
        wait_until(lambda: int(fleet.redis.cli("HLEN", f"{PREFIX}:state")) >= n, "the publish", timeout=args.timeout)
        publish_s, publish_cpu = time.monotonic() - t0, cpu_seconds(pub.agent.pid)
        redis_cpu = cpu_seconds(fleet.redis.proc.pid) - redis0
        say(f"  publish of {n} by the agent: {publish_s:.1f} s, agent CPU {publish_cpu:.1f} s "
            f"({publish_cpu / n * 1e6:.0f} µs per change), redis-server CPU {redis_cpu:.1f} s; {load()}")
        after = used_memory(fleet.redis)
        stream = int(fleet.redis.cli("MEMORY", "USAGE", f"{PREFIX}:changes", "SAMPLES", "0"))
        state = int(fleet.redis.cli("MEMORY", "USAGE", f"{PREFIX}:state", "SAMPLES", "0"))
        xlen = int(fleet.redis.cli("XLEN", f"{PREFIX}:changes"))
        say(f"  Redis used_memory {before} -> {after}: {(after - before) / n:.0f} bytes per target "
            f"(stream {stream / n:.0f}, XLEN {xlen}: trimmed to fleet.stream_length, {stream / max(xlen, 1):.0f} "
            f"per entry kept; snapshot hash {state / n:.0f})")
        fresh = add_stopped_node(fleet, "fresh")
        tail = LogTail(fresh.log)
        t0 = time.monotonic()
        fresh.start_agent()
        pattern = r"resynchronised (\d+) target"
        deadline = t0 + args.timeout
        while not tail.find(pattern) and time.monotonic() < deadline:
            time.sleep(0.2)
        resync_s, resync_cpu = time.monotonic() - t0, cpu_seconds(fresh.agent.pid)
        m = tail.find(pattern)
        if m:
            audit = os.path.getsize(os.path.join(fresh.dir, "audit.log"))
            say(f"  fresh node resync: {resync_s:.1f} s to log \"resynchronised {m.group(1)} target(s)\", "
                f"agent CPU {resync_cpu:.1f} s, its audit log {audit / n:.0f} bytes per target; {load()}")
            lib = open_core(args.core)
            reader = Reader(lib, fresh.conf)
            probe = random.sample(range(n), 100)
            bad = [i for i in probe if not reader.suspended(f"u{i}@d{i % 5000}.example")]
            say(f"  100 random targets checked through the C API on the fresh node: {100 - len(bad)} enforced")
        else:
            say(f"  fresh node resync: NOT DONE after {args.timeout} s: {tail.applied} applied "
                f"({tail.applied / resync_s:.0f}/s: {n / max(tail.applied, 1) * resync_s:.0f} s for {n} at that "
                f"rate), agent CPU {resync_cpu:.1f} s; {load()}")
    finally:
        fleet.stop()


def drive(node, rate, seconds, pool, round_no):
    """rate changes/s on node for seconds: a batch of rate/10 lines every 100 ms."""
    per = max(1, rate // 10)
    rounds = int(seconds * 10)
    t0 = time.monotonic()
    last = None
    for k in range(rounds):
        lines = []
        for j in range(per):
            c = (round_no + k) * per + j
            i, op = c % pool, "suspend" if (c // pool) % 2 == 0 else "unsuspend"
            last = (f"cpu{i}@bench.example", op)
            lines.append(json.dumps({"op": op, "target": last[0], **({"services": ["imap"]} if op == "suspend" else {})}))
        out = subprocess.run([fleetenv.PATHS["cli"], "--config", node.conf, "batch"], input="\n".join(lines) + "\n",
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise AssertionError(f"batch: {out.stdout}{out.stderr}")
        pause = t0 + (k + 1) * 0.1 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    return rounds * per, time.monotonic() - t0, last, round_no + rounds


def wait_state(reader, target, op, timeout=60):
    want = op == "suspend"
    wait_until(lambda: reader.suspended(target) == want, f"{target} to be {op}ed on b", timeout=timeout)


def strace_counts(path):
    with open(path) as f:
        text = f.read()
    m = re.search(r"^-+.*\n\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*total", text, re.M)
    per_call = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit() and parts[-1] != "total":
            per_call[parts[-1]] = int(parts[3])
    return (int(m.group(1)) if m else sum(per_call.values())), per_call


def part_cpu(args):
    fleet = make_fleet(["a", "b"], capacity=max(1000, 2 * args.pool))
    try:
        a, b = fleet.nodes["a"], fleet.nodes["b"]
        wait_for_heartbeats(fleet, 2)
        lib = open_core(args.core)
        reader = Reader(lib, b.conf)
        say(f"cpu: {load()}")
        ca, cb = cpu_seconds(a.agent.pid), cpu_seconds(b.agent.pid)
        time.sleep(args.idle)
        ia, ib = cpu_seconds(a.agent.pid) - ca, cpu_seconds(b.agent.pid) - cb
        say(f"  idle {args.idle:.0f} s (baseline): a {ia / args.idle * 100:.2f} %, b {ib / args.idle * 100:.2f} % "
            f"of one core")
        round_no = 0
        # Warm-up: every account of the pool exists in both stores first.
        n, _, last, round_no = drive(a, args.rate, args.pool / args.rate, args.pool, round_no)
        wait_state(reader, *last)
        ca, cb = cpu_seconds(a.agent.pid), cpu_seconds(b.agent.pid)
        t0 = time.monotonic()
        n, wall, last, round_no = drive(a, args.rate, args.seconds, args.pool, round_no)
        wait_state(reader, *last)
        span = time.monotonic() - t0
        da, db = cpu_seconds(a.agent.pid) - ca, cpu_seconds(b.agent.pid) - cb
        say(f"  {n} changes in {wall:.1f} s ({n / wall:.0f}/s), b had the last after {span:.1f} s; {load()}")
        say(f"  agent CPU: a (publishing) {da:.2f} s = {da / wall * 100:.1f} % of one core, "
            f"{da / n * 1e6:.0f} µs per change; b (applying) {db:.2f} s = {db / wall * 100:.1f} %, "
            f"{db / n * 1e6:.0f} µs per change")
        if args.strace_seconds > 0:
            traces = []
            for node in (a, b):
                out = os.path.join(fleet.root, f"strace-{node.name}.txt")
                traces.append((node, out, subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p",
                                                            str(node.agent.pid)], stderr=subprocess.DEVNULL)))
            time.sleep(1)
            n, wall, last, round_no = drive(a, args.rate, args.strace_seconds, args.pool, round_no)
            wait_state(reader, *last)
            for node, out, proc in traces:
                proc.send_signal(signal.SIGINT)
                proc.wait(30)
                total, per_call = strace_counts(out)
                top = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(per_call.items(), key=lambda kv: -kv[1])[:6])
                say(f"  strace -c -f, {n} changes: {node.name} {total / n:.2f} system calls per change ({top})")
    finally:
        fleet.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", default="cli/mailsuspend")
    p.add_argument("--core", default="dovecot-plugin/mailsuspend/libmailsuspend_core.so")
    p.add_argument("--port", type=int, default=16479)
    p.add_argument("--parts", default="latency,resync,cpu")
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--writes", type=int, default=300)
    p.add_argument("--targets", type=int, default=1_000_000)
    p.add_argument("--timeout", type=float, default=300.0, help="for the publish and the resync")
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--idle", type=float, default=10.0)
    p.add_argument("--pool", type=int, default=5000)
    p.add_argument("--strace-seconds", type=float, default=5.0)
    args = p.parse_args()
    fleetenv.PATHS["cli"] = os.path.abspath(args.cli)
    args.core = os.path.abspath(args.core)
    fleetenv.REDIS_PORT = args.port
    say(f"mailsuspend {args.cli}; {os.cpu_count()} CPUs; {load()}")
    for part in args.parts.split(","):
        {"latency": part_latency, "resync": part_resync, "cpu": part_cpu}[part](args)


if __name__ == "__main__":
    main()
