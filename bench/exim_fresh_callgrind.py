#!/usr/bin/env python3
"""Instructions of fresh Exim processes, plain and with mailsuspend: callgrind counts.

Two throw-away Exims from the test harness (tests/exim/eximtest.py), the same
config except that one includes the shipped snippets (build/conf/exim/mailsuspend-*,
conf/exim without comments, as installed)
and loads mailsuspend.so.  Per Exim, under callgrind (--trace-children=yes,
every process of the tree counted):

  submission  `exim -bs -odq`: one local SMTP submission in a fresh process
              (what sendmail and PHP's mail() start), sender alice@example.com
              (a local submission's identity is its envelope sender, so it
              gets a sender token), one recipient; the message stays queued
  delivery    `exim -M <id>`: the fresh delivery process of that message
              (routers with the mailsuspend_route snippet, maildir transport)

With --faults N it also counts, without valgrind, the minor page faults per
message of N SMTP messages to each Exim's daemon (one per connection, so one
forked process each; cminflt of the daemon, as in bench/results/2026-12-02.md).

The figure per case is the process Exim started; its forked children (the
transport) are listed in the JSON but callgrind counts a child from its
parent's start, so they are not added.

Valgrind does not run a setuid binary, so both run a copy of /usr/sbin/exim4
without the setuid bit, started as Exim's own user (Debian-exim, an Exim
admin): a process that starts as root and drops to Debian-exim cannot write
the callgrind file it opened as root.  Instruction counts do not depend on
the machine's load, unlike CPU time.
As root (Exim runs with -C), after building:

  python3 bench/exim_fresh_callgrind.py --cli build/cli/mailsuspend \\
      --so build/exim-local-scan/mailsuspend.so [--keep DIR]
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "exim"))
import eximtest  # noqa: E402
import exim_load  # noqa: E402  (bench/exim_load.py: its SMTP client and limits)

SENDER = "alice@example.com"
RECIPIENT = "bob@example.com"


def callgrind(out_dir, tag, argv, env, stdin=None):
    """Runs argv under callgrind; one output file per process in out_dir."""
    cmd = ["runuser", "-u", eximtest.EXIM_USER, "--", "valgrind", "--tool=callgrind", "--trace-children=yes",
           f"--callgrind-out-file={out_dir}/{tag}.%p", *argv]
    return subprocess.Popen(cmd, env=env, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def instructions(out_dir, tag):
    """Per process, oldest first: the Ir total callgrind recorded ("summary:").
    A forked child's total includes its parent's count up to the fork, so
    the first (the process Exim started) is the figure; adding the others
    would count the start-up twice."""
    counts = {}
    for path in glob.glob(f"{out_dir}/{tag}.*"):
        with open(path) as f:
            m = re.search(r"^summary: (\d+)", f.read(), re.M)
        if m:
            counts[int(path.rsplit(".", 1)[1])] = int(m.group(1))
    if not counts:
        raise SystemExit(f"{tag}: callgrind wrote no counts (see {out_dir})")
    return [counts[pid] for pid in sorted(counts)]


def submit(env, out_dir, tag):
    """One local SMTP submission through `exim -bs -odq`; returns the message id."""
    proc = callgrind(out_dir, tag, [env.exim_bin, "-C", env.conf, "-bs", "-odq"], env.env,
                     stdin=subprocess.PIPE)

    def reply():
        while True:
            line = proc.stdout.readline()
            if not line or line[3:4] != "-":
                return line

    def command(line):
        proc.stdin.write(line + "\r\n")
        proc.stdin.flush()
        return reply()

    reply()
    command("EHLO local.test")
    command(f"MAIL FROM:<{SENDER}>")
    command(f"RCPT TO:<{RECIPIENT}>")
    command("DATA")
    done = command(f"From: <{SENDER}>\r\nSubject: bench\r\n\r\nhello\r\n.")
    command("QUIT")
    proc.stdin.close()
    proc.wait(120)
    m = re.search(r"id=(\S+)", done)
    if not m:
        raise SystemExit(f"{tag}: message not accepted: {done!r}")
    return m.group(1)


def measure(env, out_dir, name):
    message_id = submit(env, out_dir, f"{name}-submission")
    token = "X-Mailsuspend-Token" in env.exim("-Mvh", message_id).stdout
    proc = callgrind(out_dir, f"{name}-delivery", [env.exim_bin, "-C", env.conf, "-M", message_id],
                     env.env)
    proc.communicate(timeout=120)
    if not env.mailbox(RECIPIENT):
        raise SystemExit(f"{name}: the message was not delivered")
    return {"submission": instructions(out_dir, f"{name}-submission"),
            "delivery": instructions(out_dir, f"{name}-delivery"),
            "token_header": token}


def faults_per_message(env, messages):
    """Minor page faults of the daemon's reaped children per SMTP message."""
    def cminflt():
        with open(f"/proc/{env.daemon.pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[8])

    env.start_daemon()
    exim_load.send_batch(env.port, 20, 1, [], SENDER)  # warm-up: first use of the store
    env.wait_idle()
    before = cminflt()
    errors = []
    exim_load.send_batch(env.port, messages, 1, errors, SENDER)
    env.wait_idle()
    if errors:
        raise SystemExit(f"SMTP failed: {errors[:3]}")
    return (cminflt() - before) / messages


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    exim_load.add_build_arguments(parser)
    parser.add_argument("--keep", help="keep the callgrind files in this directory")
    parser.add_argument("--faults", type=int, default=0, metavar="N",
                        help="also count page faults per message over N SMTP messages")
    args = parser.parse_args()
    exim_load.use_build_arguments(args)
    out_dir = args.keep or tempfile.mkdtemp(prefix="exim-callgrind-")
    os.makedirs(out_dir, exist_ok=True)
    os.chmod(out_dir, 0o777)  # Exim's user writes the callgrind files
    for old in glob.glob(f"{out_dir}/*-submission.*") + glob.glob(f"{out_dir}/*-delivery.*"):
        os.unlink(old)
    exim = os.path.join(out_dir, "exim4")
    shutil.copyfile(eximtest.EXIM, exim)
    os.chmod(exim, 0o755)
    results = {}
    for name in ("plain", "module"):
        # queue_only: the daemon's processes receive only (as in exim_load.py)
        env = eximtest.Env(f"callgrind-{name}", with_module=(name == "module"), exim=exim,
                           extra_main="queue_only = true", ms_extra=exim_load.BENCH_LIMITS)
        try:
            results[name] = measure(env, out_dir, name)
            if args.faults:
                results[name]["faults_per_message"] = round(faults_per_message(env, args.faults), 1)
        finally:
            env.stop()
    print(json.dumps(results, indent=2))
    for what in ("submission", "delivery"):
        plain, module = results["plain"][what][0], results["module"][what][0]
        print(f"{what}: plain {plain / 1e6:.2f} M, with mailsuspend {module / 1e6:.2f} M instructions "
              f"({(module - plain) / plain * 100:+.1f} %); forked children (counted from their "
              f"parent's start): {len(results['plain'][what]) - 1} / {len(results['module'][what]) - 1}")
    if args.faults:
        print(f"minor page faults per SMTP message: plain {results['plain']['faults_per_message']}, "
              f"with mailsuspend {results['module']['faults_per_message']}")
    print(f"token header added: {results['module']['token_header']}; callgrind files: {out_dir}")


if __name__ == "__main__":
    main()
