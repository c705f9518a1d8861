#!/usr/bin/env python3
"""Dovecot logins per second with and without mailsuspend, in one run.

Starts two real Dovecot instances from the integration-test harness on
loopback: the baseline (plain passwd-file passdb, no mailsuspend) and the
same config plus the documented 95-mailsuspend.conf snippet (mailsuspend
passdb chained after passwd-file, imap/pop3 plugins loaded) over a store
holding --suspended other mailboxes.  Concurrent clients do full logins
(greeting, LOGIN/USER+PASS, LOGOUT/QUIT, so the mail process is started
too) for --seconds per round; rounds alternate baseline / mailsuspend so
drift hits both.  Reports the median rate of each and the ratio (goal >= 0.97).

Run as root from the build dir, e.g.:
    python3 ../bench/dovecot_load.py --cli cli/mailsuspend --modules dovecot-plugin
"""
import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "dovecot"))
import harness  # noqa: E402

BENCH_CONF = """
# many logins of the same users from one address
mail_max_userip_connections = 100000
"""


def noop_plugin_conf(plugin):
    """Config that loads the do-nothing mail plugin (bench/noop_dovecot_plugin.c)
    for IMAP and POP3, from a directory the mail processes (nobody) can read."""
    plugin_dir = tempfile.mkdtemp(prefix="ms-noop-plugin-")
    os.chmod(plugin_dir, 0o755)
    shutil.copy(plugin, plugin_dir)
    return f"""
mail_plugin_dir = {plugin_dir}
protocol imap {{
  mail_plugins = $mail_plugins mailsuspend_noop
}}
protocol pop3 {{
  mail_plugins = $mail_plugins mailsuspend_noop
}}
""", plugin_dir


HOLD = 0.0  # seconds a session stays logged in before logging out


def one_imap_login(port, user):
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        f = s.makefile("rb")
        if not f.readline().startswith(b"* OK"):
            return False
        s.sendall(f'a LOGIN "{user}" "{harness.PASSWORD}"\r\n'.encode())
        line = f.readline()
        while line and not line.startswith(b"a "):
            line = f.readline()
        if not line.startswith(b"a OK"):
            return False
        if HOLD:
            time.sleep(HOLD)
        s.sendall(b"b LOGOUT\r\n")
        while f.readline():
            pass
        return True


def one_pop3_login(port, user):
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        f = s.makefile("rb")
        if not f.readline().startswith(b"+OK"):
            return False
        s.sendall(f"USER {user}\r\n".encode())
        f.readline()
        s.sendall(f"PASS {harness.PASSWORD}\r\n".encode())
        if not f.readline().startswith(b"+OK"):
            return False
        if HOLD:
            time.sleep(HOLD)
        s.sendall(b"QUIT\r\n")
        while f.readline():
            pass
        return True


TICK = os.sysconf("SC_CLK_TCK")


def dovecot_cpu_seconds(server):
    """CPU time of the whole Dovecot process tree: every live process under
    the master (own + reaped children) plus the master's reaped children.
    Short-lived imap/pop3/login processes are reaped by the master, so a
    delta over a round is the CPU those logins cost, whatever else runs on
    the machine."""
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[1] = ppid; [11..14] = utime stime cutime cstime
        stats[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    root = server.proc.pid
    total = 0
    for pid, (ppid, ticks) in stats.items():
        p = pid
        while p in stats and p != root and p > 1:
            p = stats[p][0]
        if p == root:
            total += ticks
    return total / TICK


def run_load(server, protocol, clients, seconds):
    """(logins per second, Dovecot CPU ms per login) over `seconds` with
    `clients` concurrent clients."""
    login = one_imap_login if protocol == "imap" else one_pop3_login
    port = server.ports[protocol]
    counts = [0] * clients
    failures = [0] * clients
    deadline = time.monotonic() + seconds

    def worker(i):
        user = harness.USERS[i % len(harness.USERS)]
        while time.monotonic() < deadline:
            try:
                ok = login(port, user)
            except OSError:
                ok = False
            if ok:
                counts[i] += 1
            else:
                failures[i] += 1

    cpu_before = dovecot_cpu_seconds(server)
    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    cpu = dovecot_cpu_seconds(server) - cpu_before
    if sum(failures):
        raise SystemExit(f"{sum(failures)} logins failed; see {server.log}")
    return sum(counts) / elapsed, 1000 * cpu / max(1, sum(counts))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", default="cli/mailsuspend")
    p.add_argument("--modules", default="dovecot-plugin")
    p.add_argument("--snippet", default=os.path.join(HERE, "..", "conf", "dovecot",
                                                     "95-mailsuspend.conf"))
    p.add_argument("--protocol", choices=["imap", "pop3"], default="imap")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--suspended", type=int, default=200,
                   help="other mailboxes suspended in the store")
    p.add_argument("--simultaneous", action="store_true",
                   help="load both Dovecots at the same time (--clients each), so "
                        "whatever else runs on the machine hits both alike")
    p.add_argument("--hold", type=float, default=0.0,
                   help="seconds each session stays logged in (> 1 s: past "
                        "the plugins' first re-check, which loads the core)")
    p.add_argument("--baseline-plugin", metavar="SO",
                   help="load this do-nothing mail plugin into the baseline "
                        "(bench/lib01_mailsuspend_noop_plugin.so): the ratio then "
                        "leaves out what loading any mail plugin costs Dovecot")
    args = p.parse_args()
    global HOLD
    HOLD = args.hold
    harness.require_prerequisites(args)

    baseline_conf, noop_dir = BENCH_CONF, None
    if args.baseline_plugin:
        if not os.path.isfile(args.baseline_plugin):
            sys.exit(f"--baseline-plugin: no file {args.baseline_plugin} (build target "
                     "mailsuspend_noop_plugin)")
        conf, noop_dir = noop_plugin_conf(args.baseline_plugin)
        baseline_conf += conf
    baseline = harness.Dovecot(args, with_mailsuspend=False, extra_conf=baseline_conf)
    plugged = harness.Dovecot(args, extra_conf=BENCH_CONF)
    try:
        for i in range(args.suspended):
            plugged.suspend(f"load{i}@example.net", "imap,pop3")
        baseline.start()
        plugged.start()
        run_load(baseline, args.protocol, args.clients, 1.0)  # warm-up
        run_load(plugged, args.protocol, args.clients, 1.0)
        rates = {"baseline": [], "mailsuspend": []}
        cpus = {"baseline": [], "mailsuspend": []}
        servers = (("baseline", baseline), ("mailsuspend", plugged))
        for r in range(args.rounds):
            results = {}

            def measure(name, server):
                results[name] = run_load(server, args.protocol, args.clients,
                                         args.seconds)

            if args.simultaneous:
                threads = [threading.Thread(target=measure, args=pair) for pair in servers]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            else:
                for name, server in servers:
                    measure(name, server)
            for name, _ in servers:
                rate, cpu = results[name]
                rates[name].append(rate)
                cpus[name].append(cpu)
                print(f"round {r + 1} {name:12s} {rate:8.1f} logins/s "
                      f"{cpu:6.2f} ms Dovecot CPU per login", flush=True)
        base = statistics.median(rates["baseline"])
        ms = statistics.median(rates["mailsuspend"])
        base_cpu = statistics.median(cpus["baseline"])
        ms_cpu = statistics.median(cpus["mailsuspend"])
        print(f"{args.protocol}: baseline {base:.1f} logins/s, with mailsuspend "
              f"{ms:.1f} logins/s, ratio {ms / base:.3f} (goal >= 0.97); "
              f"Dovecot CPU per login {base_cpu:.2f} ms vs {ms_cpu:.2f} ms "
              f"(+{ms_cpu - base_cpu:.2f} ms, CPU-bound ratio {base_cpu / ms_cpu:.3f}); "
              f"{args.clients} clients{' each, simultaneous' if args.simultaneous else ''}, "
              f"{args.rounds} x {args.seconds:g} s rounds"
              + (", baseline with a no-op mail plugin" if args.baseline_plugin else "")
              + (f", sessions held {args.hold:g} s" if args.hold else ""))
    finally:
        baseline.stop()
        plugged.stop()
        if noop_dir:
            shutil.rmtree(noop_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
