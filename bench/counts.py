#!/usr/bin/env python3
"""Deterministic costs: instructions and simulated cache misses, counted with
valgrind's callgrind (the VM exposes no hardware counters, and counts do not
move with the machine's load).

Rows (choose with --rows, default all):
  lookups  per lookup at --accounts suspended mailboxes over 5000 domains
           (bench_data.cpp), hit and miss: the store (StoreReader::lookup),
           std::unordered_map, tinycdb (when count_lookups was built with it),
           and the C API checks mailsuspend_check_login / _send / _receive.
           build/bench/count_lookups does the lookups; only the measured
           lookups are collected, after a warm-up of as many other keys.
  exim     per message accepted, the whole Exim process tree, with and
           without the module, same generated config (tests/exim/eximtest.py,
           queue_only as in exim_load.py): a local submission (`exim4 -bs`,
           a fresh process), an SMTP message to a running daemon (the
           forked receiving process, AUTH + MAIL + RCPT + DATA + QUIT, and
           the daemon's work for that connection), the same for an inbound message
           (no AUTH, a remote sender, a local recipient), and the delivery of one queued
           message to a local maildir (`exim4 -M id`, router snippet check).
           Every process is followed (--trace-children=yes) and each fork
           starts its own count (--dump-before=fork), so the sums count
           each instruction once.
  dovecot  per IMAP login + logout (auth, imap-login, imap), with and
           without the shipped 95-mailsuspend.conf.
  held     (not in the default) what holding an IMAP session past its
           first re-check adds to the imap process (held 6 s, then NOOP and
           LOGOUT, against the same sessions logged out at once), with the
           do-nothing plugin and with mailsuspend.

Simulated caches (callgrind --cache-sim=yes, fixed rather than guessed from
the host): I1 32 KiB 8-way, D1 48 KiB 12-way, LL 32 MiB 16-way, 64 B lines.
"D1 misses" are data reads + writes missing D1; "LL misses" are every
last-level miss (instruction + data).

  sudo python3 bench/counts.py --build build            # everything (a few minutes)
  sudo python3 bench/counts.py --rows lookups --lookups 5000
  sudo python3 bench/counts.py --rows exim --shipped-config   # the config as it ships
"""
import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import exim_load  # noqa: E402  (populate, BENCH_LIMITS; imports tests/exim/eximtest.py)
import eximtest  # noqa: E402

CACHES = ["--I1=32768,8,64", "--D1=49152,12,64", "--LL=33554432,16,64"]
CACHE_TEXT = "I1 32 KiB 8-way, D1 48 KiB 12-way, LL 32 MiB 16-way, 64 B lines"
LOOKUP_SYSTEMS = ("store", "map", "cdb", "login", "send", "receive")
LOOKUP_NAMES = {"store": "StoreReader::lookup", "map": "std::unordered_map::find",
                "cdb": "tinycdb cdb_find", "login": "mailsuspend_check_login",
                "send": "mailsuspend_check_send", "receive": "mailsuspend_check_receive"}


def callgrind_argv(out_dir, *extra):
    return ["valgrind", "--tool=callgrind", "--cache-sim=yes", *CACHES,
            f"--callgrind-out-file={out_dir}/cg.%p", *extra]


def totals(files):
    """Sum of callgrind's totals over files: {event: count}."""
    sums = {}
    for path in files:
        events = None
        with open(path) as f:
            for line in f:
                if line.startswith("events:"):
                    events = line.split()[1:]
                elif line.startswith("totals:"):
                    for name, value in zip(events, line.split()[1:]):
                        sums[name] = sums.get(name, 0) + int(value)
    return sums


def per_op(sums, ops):
    d1 = sums.get("D1mr", 0) + sums.get("D1mw", 0)
    ll = sums.get("ILmr", 0) + sums.get("DLmr", 0) + sums.get("DLmw", 0)
    return {"instructions": sums.get("Ir", 0) / ops, "d1_misses": d1 / ops, "ll_misses": ll / ops}


# ---- lookups -----------------------------------------------------------------

def lookup_rows(args):
    prog = os.path.join(args.build, "bench", "count_lookups")
    # Data sets, map and cdb file built natively first (once; kept on disk).
    for system in ("store", "cdb"):
        proc = subprocess.run([prog, system, "hit", "0", str(args.accounts)], capture_output=True, text=True)
        if proc.returncode != 0 and system == "cdb":
            print(f"no cdb row: {proc.stderr.strip()}", file=sys.stderr)
        elif proc.returncode != 0:
            raise SystemExit(f"count_lookups failed: {proc.stderr}")
    have_cdb = proc.returncode == 0
    rows = []
    for system in LOOKUP_SYSTEMS:
        if system == "cdb" and not have_cdb:
            continue
        for kind in ("hit", "miss"):
            with tempfile.TemporaryDirectory(prefix="counts-") as out:
                argv = callgrind_argv(out, "--instr-atstart=no", "--collect-atstart=no",
                                      prog, system, kind, str(args.lookups), str(args.accounts))
                proc = subprocess.run(argv, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout}{proc.stderr[-2000:]}")
                row = per_op(totals(glob.glob(f"{out}/cg.*")), args.lookups)
            row.update(row=f"{LOOKUP_NAMES[system]} {kind}", system=system, kind=kind)
            rows.append(row)
            print_row(row)
    return rows


# ---- Exim --------------------------------------------------------------------

def wrapper(directory, out_dir, program, *extra, keep_caps=True):
    """A script running program under callgrind, every process followed.
    Callgrind creates its output file (mode 0600) when a process starts and
    opens it again to write at exit: a process that changed to another user
    meanwhile (Exim's reception and transports, Dovecot's services) could
    not, and its counts would be lost.  no_setuid_fixup keeps root's
    capabilities through that change (it costs the program nothing)."""
    path = os.path.join(directory, os.path.basename(program) + "-callgrind")
    argv = ["setpriv", "--securebits", "+no_setuid_fixup"] if keep_caps else []
    argv += callgrind_argv(out_dir, "--trace-children=yes", "--dump-before=fork", *extra)
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec " + " ".join(f"'{a}'" for a in argv) + f" {program} \"$@\"\n")
    os.chmod(path, 0o755)
    return path


def add_to(sums, more):
    for k, v in more.items():
        sums[k] = sums.get(k, 0) + v


def counted(env, out_dir, action, daemon_pid=None):
    """Runs action() with env's Exim under callgrind; sums the files it wrote.
    A daemon's work for a connection (accepting it, expanding
    smtp_accept_max_per_host, forking) is the part it dumps at that fork
    (cg.PID.N): counted, as the message's share; its own file, written at
    exit, is not."""
    before = set(glob.glob(f"{out_dir}/cg.*"))
    action()
    env.wait_idle()
    files = [p for p in glob.glob(f"{out_dir}/cg.*") if p not in before and
             os.path.basename(p) != f"cg.{daemon_pid}"]
    if not files:
        raise SystemExit("callgrind wrote nothing: " + out_dir)
    return totals(files)


def exim_rows_for(name, env, args):
    out_dir = tempfile.mkdtemp(prefix=f"counts-exim-{name}-")
    plain_exim = env.exim_bin
    # Kept files name every function in full (a forked child's file would
    # otherwise refer to names its parent's file defined).
    extra = ["--compress-strings=no", "--compress-pos=no"] if args.keep else []
    env.exim_bin = wrapper(env.dir, out_dir, plain_exim, "--vgdb=no", *extra)
    try:
        return counted_rows(name, env, out_dir, args)
    finally:
        env.exim_bin = plain_exim
        if args.keep:  # for callgrind_annotate: where the instructions went
            shutil.copytree(out_dir, os.path.join(args.keep, name), dirs_exist_ok=True)
        shutil.rmtree(out_dir, ignore_errors=True)


def counted_rows(name, env, out_dir, args):
    rows = []
    sender, rcpt = "alice@example.com", "bob@example.com"
    ids = []

    def submit():
        out = env.local_smtp(sender, [rcpt])
        if not out.data or out.data[0] != 250:
            raise SystemExit(f"exim -bs ({name}) did not accept the message: {out}")
        ids.append(out.message_id)
    sums = {}
    for _ in range(args.messages):
        add_to(sums, counted(env, out_dir, submit))
    rows.append(dict(per_op(sums, args.messages), row=f"Exim local submission (-bs), {name}"))

    # What every fresh process pays before any message: Exim reading its
    # config (with the module: the snippets and their macros; the module is
    # not loaded, -bP expands nothing).
    sums = counted(env, out_dir, lambda: env.exim("-bP", "spool_directory"))
    rows.append(dict(per_op(sums, 1), row=f"Exim reading its config (-bP), {name}"))

    sums = {}
    for message_id in ids:
        add_to(sums, counted(env, out_dir, lambda: env.exim("-M", message_id, check=False)))
    delivered = len(env.mailbox(rcpt))
    if delivered != args.messages:
        raise SystemExit(f"{name}: {delivered} of {args.messages} messages delivered")
    rows.append(dict(per_op(sums, args.messages), row=f"Exim delivery to a maildir (-M), {name}"))

    env.start_daemon()
    try:
        counted(env, out_dir, lambda: first_connection(env.port), env.daemon.pid)
        # An authenticated submission, and inbound mail (the bulk of what a
        # hosting MX accepts: no AUTH, from a host outside webmail.hosts, to a
        # local mailbox; nothing sent by one of our accounts, so only the
        # recipient is checked).
        for what, mail_from, user in (("SMTP message", sender, sender),
                                      ("inbound SMTP message", "carol@remote.test", None)):
            def smtp():
                out = env.send(mail_from, [rcpt], user=user)
                if not out.data or out.data[0] != 250:
                    raise SystemExit(f"{what} ({name}) was not accepted: {out}")
            counted(env, out_dir, smtp, env.daemon.pid)  # warm-up
            sums = {}
            for _ in range(args.messages):
                add_to(sums, counted(env, out_dir, smtp, env.daemon.pid))
            rows.append(dict(per_op(sums, args.messages), row=f"Exim {what} to the daemon, {name}"))
    finally:
        env._stop_daemon()
    return rows


# Added to the test config for both Exims: messages are only queued (as in
# exim_load.py), also those submitted with -odi; re-executions use the copy.
EXIM_EXTRA = """queue_only = true
queue_only_override = false
exim_path = {exim}"""


def first_connection(port):
    """The daemon's first connection, not counted: the test config has no TLS
    certificate, so the daemon makes a self-signed one now (3 G
    instructions under callgrind, a minute), which its children inherit."""
    with socket.create_connection(("127.0.0.1", port), timeout=600) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"QUIT\r\n")
        f.read()


def exim_rows(args):
    eximtest.use_build(args.build)
    # valgrind runs no setuid program, even for root: a plain copy of exim4,
    # which Exim also re-executes (exim_path) should it need to.
    copy_dir = tempfile.mkdtemp(prefix="counts-exim-bin-")
    os.chmod(copy_dir, 0o755)
    exim_copy = os.path.join(copy_dir, "exim4")
    shutil.copyfile(eximtest.EXIM, exim_copy)
    os.chmod(exim_copy, 0o755)
    try:
        return exim_rows_with(exim_copy, args)
    finally:
        shutil.rmtree(copy_dir, ignore_errors=True)


def shipped_config(env):
    """conf/mailsuspend.conf as it ships (every key written out, with its
    comments), its paths and commands moved into env's directory and Exim."""
    with open(os.path.join(HERE, "..", "conf", "mailsuspend.conf")) as f:
        text = f.read()
    exim = f"{env.exim_bin} -C {env.conf}"
    for old, new in (('"/var/lib/mailsuspend"', f'"{env.dir}/store"'),
                     ('"/var/log/mailsuspend/audit.log"', f'"{env.dir}/audit.log"'),
                     ('"/usr/sbin/exim4 -Rrff ', f'"{exim} -Rrff '),
                     ('"/usr/sbin/exim4 -Srff ', f'"{exim} -Srff '),
                     ('exim_command = "/usr/sbin/exim4"', f'exim_command = "{exim}"')):
        if old not in text:
            raise SystemExit(f"conf/mailsuspend.conf no longer has {old}: update shipped_config()")
        text = text.replace(old, new)
    return text


def exim_rows_with(exim_copy, args):
    rows = []
    for name in ("plain", "module"):
        env = eximtest.Env(f"counts-{name}", with_module=name == "module", exim=exim_copy,
                           extra_main=EXIM_EXTRA.format(exim=exim_copy),
                           ms_extra=exim_load.BENCH_LIMITS)
        try:
            if args.shipped_config:
                env.write_ms_conf(shipped_config(env))
                env.cli("init")
            if name == "module":
                exim_load.populate(env, args.suspended)
            for row in exim_rows_for(name, env, args):
                rows.append(row)
                print_row(row)
            if name == "module" and "mailsuspend: store unavailable" in env.mainlog():
                raise SystemExit("the module could not read its store: numbers would be meaningless")
        finally:
            env.stop()
    return rows


# ---- Dovecot -------------------------------------------------------------------

# Both Dovecots (tests/dovecot/harness.py, the shipped 95-mailsuspend.conf
# for the one with mailsuspend) differ from the test config only here:
# valgrind needs more address space than Dovecot's default vsz_limit
# (256 MiB) leaves a service process, and its slowness must not end a
# login by Dovecot's timeouts.  The auth cache stays off (Debian's default),
# so every login asks the passdbs, as a first login does.
DOVECOT_EXTRA = """default_vsz_limit = 0
service imap-login {
  chroot =
}
service pop3-login {
  chroot =
}
service managesieve-login {
  chroot =
}
"""


class OpenCountFiles:
    """Dovecot checks that its processes cannot regain root, so they cannot
    keep root's capabilities as Exim's do (wrapper()): instead every count
    file callgrind creates (mode 0600, by root, at exec) is opened to all
    within a few milliseconds, and the process can write it at exit after
    it changed user.  (The login processes' chroot is off for the same
    reason: the directory must be there for them.)"""

    def __init__(self, out_dir):
        self.out_dir, self.done = out_dir, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.done.wait(0.005):
            for path in glob.glob(f"{self.out_dir}/cg.*"):
                try:
                    if os.stat(path).st_mode & 0o777 != 0o666:
                        os.chmod(path, 0o666)
                except OSError:
                    pass

    def __enter__(self):
        os.chmod(self.out_dir, 0o1777)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def imap_command(s, f, tag, command, what):
    """Sends one tagged command and reads up to its tagged reply: OK or exit."""
    s.sendall(f"{tag} {command}\r\n".encode())
    while True:
        line = f.readline()
        if not line or line.startswith(tag.encode() + b" "):
            break
    if not line.startswith(tag.encode() + b" OK"):
        raise SystemExit(f"{what} failed: {line!r}")


def imap_login_logout(port, user, password, hold=0.0):
    """One IMAP session: greeting, LOGIN, LOGOUT; returns when the server
    closed the connection (the imap process is then on its way out).  With
    hold, the session stays logged in that long and runs one NOOP before
    LOGOUT (the command a held session's client sends sooner or later)."""
    with socket.create_connection(("127.0.0.1", port), timeout=300) as s:
        f = s.makefile("rb")
        greeting = f.readline()
        if not greeting.startswith(b"* OK"):
            raise SystemExit(f"no IMAP greeting on port {port}: {greeting!r}")
        imap_command(s, f, "a", f'LOGIN "{user}" "{password}"', f"IMAP login of {user}")
        if hold:
            time.sleep(hold)
            imap_command(s, f, "n", "NOOP", f"IMAP NOOP of {user} after {hold} s")
        s.sendall(b"b LOGOUT\r\n")
        while f.readline():
            pass


# The processes of a login (the "auth + login + imap"): the others
# (master, config, log, anvil, stats) do the same for a login with and without
# mailsuspend and are left out, so a difference is a share of less.
LOGIN_PROCESSES = ("/usr/lib/dovecot/auth", "/usr/lib/dovecot/imap-login", "/usr/lib/dovecot/imap")


def dovecot_run(harness, server, out_dir, logins, hold=0.0):
    """Per process kind, the counts of one Dovecot run from start to stop with
    `logins` IMAP logins and logouts (each held `hold` seconds)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    with OpenCountFiles(out_dir):
        server.start()
        try:
            for i in range(logins):
                imap_login_logout(server.ports["imap"], harness.USERS[i % len(harness.USERS)], harness.PASSWORD,
                                  hold)
                time.sleep(1.0)  # the imap process writes its counts when it has exited
        finally:
            server._stop_process()
    by_kind = {}
    for path in glob.glob(f"{out_dir}/cg.*"):
        with open(path) as f:
            cmd = next((line.split()[1] for line in f if line.startswith("cmd:")), "")
        add_to(by_kind.setdefault(cmd, {}), totals([path]))
    return by_kind


def kind_difference(before, after, kind):
    """Per event, what kind's processes counted in after beyond before
    (dovecot_run's results)."""
    a, b = before.get(kind, {}), after.get(kind, {})
    return {event: b.get(event, 0) - a.get(event, 0) for event in set(a) | set(b)}


def dovecot_per_login(harness, server, out_dir, logins, keep=None):
    """The login processes' counts per IMAP login and logout: a run with one
    login (processes started, the auth worker, first-use costs) taken from a
    run with 1 + logins.  keep: a directory to copy the second run's files to."""
    one = dovecot_run(harness, server, out_dir, 1)
    more = dovecot_run(harness, server, out_dir, 1 + logins)
    if keep:
        shutil.copytree(out_dir, keep, dirs_exist_ok=True)
    diff = {}
    for kind in LOGIN_PROCESSES:
        kind_diff = kind_difference(one, more, kind)
        print(f"  {kind}: {kind_diff.get('Ir', 0) / logins:,.0f} instructions per login", file=sys.stderr)
        add_to(diff, kind_diff)
    return per_op(diff, logins)


def dovecot_harness(args):
    """tests/dovecot/harness.py, set up for args.build and the shipped snippet."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "dovecot"))
    import harness  # noqa: E402  (the integration tests' Dovecot)
    build = os.path.abspath(args.build)
    hargs = argparse.Namespace(cli=os.path.join(build, "cli", "mailsuspend"),
                               modules=os.path.join(build, "dovecot-plugin"),
                               snippet=os.path.join(HERE, "..", "conf", "dovecot", "95-mailsuspend.conf"))
    harness.require_prerequisites(hargs)
    return harness, hargs


def counted_dovecot(harness, hargs, with_ms, extra_conf, measure):
    """measure(server, out_dir) on a Dovecot (with_ms: the shipped snippet)
    whose every process runs under callgrind (the config check that start()
    runs too: the same in every run, so it cancels out)."""
    plain_dovecot = harness.DOVECOT
    server = harness.Dovecot(hargs, with_mailsuspend=with_ms, auth_cache=False,
                             extra_conf=DOVECOT_EXTRA + extra_conf)
    out_dir = os.path.join(server.tmp, "callgrind")
    harness.DOVECOT = wrapper(server.tmp, out_dir, plain_dovecot, keep_caps=False)
    try:
        return measure(server, out_dir)
    finally:
        harness.DOVECOT = plain_dovecot
        server.stop()


def dovecot_rows(args):
    harness, hargs = dovecot_harness(args)
    rows = []
    for name, with_ms in (("plain", False), ("mailsuspend", True)):
        keep = os.path.join(args.keep, f"dovecot-{name}") if args.keep else None
        row = dict(counted_dovecot(harness, hargs, with_ms, "", lambda server, out_dir:
                                   dovecot_per_login(harness, server, out_dir, args.logins, keep)),
                   row=f"Dovecot IMAP login + logout, {name}")
        rows.append(row)
        print_row(row)
    return rows


# A session held past its first re-check (issue 14: "no more than with a
# do-nothing plugin").  The plugins re-check a session
# MAILSUSPEND_RECHECK_MSECS (3 s) after it started, then on pushes and before
# commands when the store's change stamp moved; HELD_SECONDS is past that
# with room for valgrind's slowness.
HELD_SECONDS = 6.0


def imap_held_extra(harness, server, out_dir, sessions, keep=None):
    """What holding a session past its first re-check adds to the imap
    process: the same run (Dovecot started, `sessions` logins, stopped)
    with the sessions held and with them logged out at once.  keep: a
    directory to copy both runs' files to (short/, held/)."""
    short = dovecot_run(harness, server, out_dir, sessions)
    if keep:
        shutil.copytree(out_dir, os.path.join(keep, "short"), dirs_exist_ok=True)
    held = dovecot_run(harness, server, out_dir, sessions, HELD_SECONDS)
    if keep:
        shutil.copytree(out_dir, os.path.join(keep, "held"), dirs_exist_ok=True)
    return per_op(kind_difference(short, held, "/usr/lib/dovecot/imap"), sessions)


def held_rows(args):
    """The imap process's extra for a held session, with the do-nothing
    plugin (bench/noop_dovecot_plugin.c) and with mailsuspend's plugins."""
    harness, hargs = dovecot_harness(args)
    import dovecot_load  # noqa: E402  (noop_plugin_conf)
    noop = os.path.join(os.path.abspath(args.build), "bench", "lib01_mailsuspend_noop_plugin.so")
    if not os.path.exists(noop):
        raise SystemExit(f"{noop} missing: build the mailsuspend_noop_plugin target")
    noop_conf, noop_dir = dovecot_load.noop_plugin_conf(noop)
    rows = []
    try:
        for name, with_ms, extra in (("do-nothing plugin", False, noop_conf), ("mailsuspend", True, "")):
            keep = os.path.join(args.keep, "held-" + name.split()[0]) if args.keep else None
            row = dict(counted_dovecot(harness, hargs, with_ms, extra, lambda server, out_dir:
                                       imap_held_extra(harness, server, out_dir, args.logins, keep)),
                       row=f"imap process, a session held {HELD_SECONDS:g} s (past the re-check) "
                           f"over one logged out at once, {name}")
            rows.append(row)
            print_row(row)
    finally:
        shutil.rmtree(noop_dir, ignore_errors=True)
    return rows


# ---- output ------------------------------------------------------------------

def print_row(row):
    print(f"| {row['row']} | {row['instructions']:,.0f} | {row['d1_misses']:,.1f} | {row['ll_misses']:,.1f} |",
          flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    parser.add_argument("--rows", default="lookups,exim,dovecot",
                        help="lookups, exim, dovecot, held (a Dovecot session held past its re-check), "
                             "or several (comma-separated)")
    parser.add_argument("--lookups", type=int, default=20000, help="measured lookups per row")
    parser.add_argument("--accounts", type=int, default=1000000)
    parser.add_argument("--messages", type=int, default=3, help="Exim messages per row")
    parser.add_argument("--logins", type=int, default=8, help="Dovecot IMAP logins per row")
    parser.add_argument("--suspended", type=int, default=1000,
                        help="suspended accounts in the Exim rows' store (none is the test sender or recipient)")
    parser.add_argument("--shipped-config", action="store_true",
                        help="Exim rows: the module reads conf/mailsuspend.conf as it ships (paths moved) "
                             "instead of the tests' short config")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", metavar="DIR", help="copy the Exim rows' callgrind files to DIR/<plain|module>, "
                        "the Dovecot rows' to DIR/dovecot-<plain|mailsuspend>, the held rows' to "
                        "DIR/held-<do-nothing|mailsuspend>/<short|held>")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind missing (Debian: apt-get install valgrind)")
    print(f"simulated caches: {CACHE_TEXT}")
    print("| per operation | instructions | D1 misses | LL misses |\n|---|---:|---:|---:|", flush=True)
    rows = []
    wanted = args.rows.split(",")
    if "lookups" in wanted:
        rows += lookup_rows(args)
    if "exim" in wanted:
        rows += exim_rows(args)
    if "dovecot" in wanted:
        rows += dovecot_rows(args)
    if "held" in wanted:
        rows += held_rows(args)
    if args.json:
        print(json.dumps({"caches": CACHE_TEXT, "accounts": args.accounts, "lookups": args.lookups,
                          "messages": args.messages, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
