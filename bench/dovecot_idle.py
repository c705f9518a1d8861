#!/usr/bin/env python3
"""CPU that idle IMAP sessions cost Dovecot, with and without mailsuspend.

Starts two real Dovecot instances from the integration-test harness on
loopback: the baseline (no mailsuspend) and the same config plus the
documented 95-mailsuspend.conf snippet.  Opens --sessions IMAP sessions on
each (LOGIN, SELECT INBOX, then nothing: an idle client), waits until every
session is past the plugin's first re-check (the core is loaded), then
measures the CPU time of each Dovecot's whole process tree (the sum of
/proc/PID/schedstat run time, in ns, of every process under its master)
over --seconds, in --rounds windows that alternate between the two servers
so drift hits both.  Reports the median per window and per session.

With the push (the default build) a session past its first check wakes
only when a writer changes the store; --changes N makes N changes per
window to measure that.  Each mail process then holds one inotify
instance: past fs.inotify.max_user_instances (128 per UID by default) the
rest fall back to the 3 s timer, which the report counts ("fell back"), so
raise it for thousands of sessions (sysctl fs.inotify.max_user_instances).

Sessions do not send IDLE: Dovecot's own IDLE watches the maildir with one
inotify instance per process, and past fs.inotify.max_user_instances (128
per UID by default; all sessions run as one UID here) it falls back to
polling every mailbox_idle_check_interval, which would measure Dovecot's
fallback rather than the plugin.

Run as root from the build dir, e.g.:
    python3 ../bench/dovecot_idle.py --sessions 200
    python3 ../bench/dovecot_idle.py --sessions 2000
    python3 ../bench/dovecot_idle.py --sessions 200 --also-modules DIR --also-name timer
      (DIR: the plugins built with -DMAILSUSPEND_PUSH=0, the 3 s timer only)
"""
import argparse
import os
import resource
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "dovecot"))
import harness  # noqa: E402


def bench_conf(sessions):
    """Limits for `sessions` concurrent IMAP sessions (Dovecot's defaults
    allow 1000 processes per service and 10 sessions per user and IP)."""
    processes = sessions + 200
    return f"""
mail_max_userip_connections = 100000
default_process_limit = {processes}
default_client_limit = {4 * processes}
service imap {{
  process_limit = {processes}
}}
service imap-login {{
  process_limit = {processes}
}}
"""


def open_session(port, user):
    """A logged-in IMAP session with INBOX selected, left open."""
    s = socket.create_connection(("127.0.0.1", port), 30)
    f = s.makefile("rb")

    def tagged(tag):
        while True:
            line = f.readline()
            if not line:
                raise OSError("connection closed during setup")
            if line.startswith(tag + b" "):
                return line

    if not f.readline().startswith(b"* OK"):
        raise OSError("no greeting")
    s.sendall(f'a LOGIN "{user}" "{harness.PASSWORD}"\r\n'.encode())
    if not tagged(b"a").startswith(b"a OK"):
        raise OSError("login refused")
    s.sendall(b"s SELECT INBOX\r\n")
    if not tagged(b"s").startswith(b"s OK"):
        raise OSError("SELECT failed")
    return s, f


def open_sessions(server, count, workers=8):
    sessions = []
    lock = threading.Lock()
    errors = []

    def worker(n):
        for i in range(n, count, workers):
            try:
                conn = open_session(server.ports["imap"], harness.USERS[i % len(harness.USERS)])
            except OSError as e:
                errors.append(str(e))
                return
            with lock:
                sessions.append(conn)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{len(errors)} sessions failed ({errors[0]}); see {server.log}")
    return sessions


def context_switches(pid):
    """Voluntary + involuntary context switches of pid so far."""
    switches = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                switches += int(line.split()[1])
    return switches


def process_tree_usage(root):
    """{pid: (run time in ns, context switches)} of every process under
    root (root included)."""
    parents, usage = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/schedstat") as f:
                run = int(f.read().split()[0])
            usage[int(entry)] = (run, context_switches(entry))
        except (OSError, IndexError, ValueError):
            continue
    tree = {}
    for pid in usage:
        p = pid
        while p in parents and p != root and p > 1:
            p = parents[p]
        if p == root:
            tree[pid] = usage[pid]
    return tree


def cpu_over(server, seconds, changes=0):
    """(CPU seconds the tree used over `seconds`, context switches,
    processes in the tree).  Only processes alive at both ends count
    (none should come or go).  changes: that many store changes (an
    unrelated mailbox suspended, by the CLI, outside the tree) spread over
    the window: what a change costs the idle sessions."""
    before = process_tree_usage(server.proc.pid)
    start = time.monotonic()
    for i in range(changes):
        time.sleep(max(0.0, start + (i + 0.5) * seconds / changes - time.monotonic()))
        server.suspend(f"change{i}@example.net", "imap")
    time.sleep(max(0.0, start + seconds - time.monotonic()))
    after = process_tree_usage(server.proc.pid)
    common = before.keys() & after.keys()
    cpu = sum(after[p][0] - before[p][0] for p in common) / 1e9
    switches = sum(after[p][1] - before[p][1] for p in common)
    return cpu, switches, len(common)


def timer_fallbacks(server):
    """Mail processes that logged falling back from the push to the timer
    (e.g. past fs.inotify.max_user_instances)."""
    return server.log_text().count("live sessions re-checked every")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", default="cli/mailsuspend")
    p.add_argument("--modules", default="dovecot-plugin")
    p.add_argument("--snippet", default=os.path.join(HERE, "..", "conf", "dovecot",
                                                     "95-mailsuspend.conf"))
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--suspended", type=int, default=200,
                   help="other mailboxes suspended in the store")
    p.add_argument("--also-modules", metavar="DIR",
                   help="a third Dovecot with the modules built in DIR (e.g. "
                        "another version of the plugins), measured alongside")
    p.add_argument("--also-name", default="also-modules",
                   help="what to call the --also-modules server in the report")
    p.add_argument("--changes", type=int, default=0,
                   help="store changes made during each window (default none: idle)")
    p.add_argument("--no-baseline", action="store_true",
                   help="no Dovecot without mailsuspend (its idle cost is 0; "
                        "saves the processes at thousands of sessions)")
    args = p.parse_args()
    harness.require_prerequisites(args)
    # the client holds an fd per session per server; Dovecot's master
    # inherits this limit and checks it against its process limits
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fds = 8 * args.sessions + 4096
    if hard != resource.RLIM_INFINITY:
        fds = min(fds, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (fds, hard))

    conf = bench_conf(args.sessions)
    servers = [] if args.no_baseline else [
        ("baseline", harness.Dovecot(args, with_mailsuspend=False, extra_conf=conf))]
    servers.append(("mailsuspend", harness.Dovecot(args, extra_conf=conf)))
    if args.also_modules:
        other = argparse.Namespace(**vars(args))
        other.modules = args.also_modules
        harness.require_prerequisites(other)
        servers.append((args.also_name, harness.Dovecot(other, extra_conf=conf)))
    with_plugins = [(n, s) for n, s in servers if n != "baseline"]
    held = []
    try:
        for _, server in with_plugins:
            for i in range(args.suspended):
                server.suspend(f"load{i}@example.net", "imap,pop3")
        for name, server in servers:
            server.start()
            start = time.monotonic()
            held += open_sessions(server, args.sessions)
            print(f"{name}: {args.sessions} sessions open in "
                  f"{time.monotonic() - start:.1f} s", flush=True)
        time.sleep(5)  # every session past its first re-checks
        cpu = {name: [] for name, _ in servers}
        switches = {name: [] for name, _ in servers}
        for r in range(args.rounds):
            for name, server in servers:
                used, switched, procs = cpu_over(server, args.seconds, args.changes)
                cpu[name].append(used)
                switches[name].append(switched)
                print(f"round {r + 1} {name:12s} {used:7.3f} s CPU, {switched:6d} context "
                      f"switches in {args.seconds:g} s ({procs} processes)", flush=True)
        for name, server in servers:
            if not server.alive():
                raise SystemExit(f"{name} dovecot died; see {server.log}")
        base = statistics.median(cpu["baseline"]) if "baseline" in cpu else 0.0
        print(f"{args.sessions} idle IMAP sessions, {args.seconds:g} s windows, "
              f"{args.changes} store changes per window, "
              f"{args.rounds} rounds: Dovecot CPU (median)"
              + (f" baseline {base:.3f} s" if "baseline" in cpu else " (no baseline: taken as 0)"))
        for name, server in with_plugins:
            ms = statistics.median(cpu[name])
            per_session = (ms - base) / args.sessions / args.seconds * 1e6
            print(f"  {name}: {ms:.3f} s (+{ms - base:.3f} s; "
                  f"{per_session:+.2f} us per session per second); "
                  f"{statistics.median(switches[name]):.0f} context switches; "
                  f"{timer_fallbacks(server)} processes fell back to the timer")
    finally:
        for s, f in held:
            f.close()
            s.close()
        for _, server in servers:
            server.stop()


if __name__ == "__main__":
    main()
