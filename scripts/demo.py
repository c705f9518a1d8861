"""The mailsuspend demo: what an admin does and what users and senders see,
on a real Dovecot and a real Exim started on loopback by the test harnesses."""
import argparse
import os
import sys
import time

ARGS = None


def say(title):
    print(f"\n\033[1m== {title}\033[0m")


def show(label, value):
    value = str(value)
    if len(value) > 110:  # IMAP's capability list says nothing here
        value = value[:52] + " ... " + value[-50:]
    print(f"   {label:<44} {value}")


def cli_demo(run):
    say("The store: suspend, status, list (mailsuspend CLI)")
    for argv in (["suspend", "alice@example.com", "--service", "imap,pop3", "--reason",
                  "unpaid invoice", "--for", "24h"],
                 ["suspend", "@example.org", "--service", "send", "--lock"],
                 ["status", "alice@example.com"],
                 ["status", "carol@example.org", "--json"],
                 ["unsuspend", "@example.org"],
                 ["list"]):
        res = run(*argv, check=False)
        print(f"$ mailsuspend {' '.join(argv)}   (exit {res.returncode})")
        print("  " + (res.stdout + res.stderr).strip().replace("\n", "\n  "))


def dovecot_demo():
    sys.path.insert(0, os.path.join(ARGS.root, "tests", "dovecot"))
    import harness
    args = argparse.Namespace(cli=os.path.join(ARGS.build, "cli", "mailsuspend"),
                              modules=os.path.join(ARGS.build, "dovecot-plugin"),
                              snippet=os.path.join(ARGS.root, "conf", "dovecot", "95-mailsuspend.conf"))
    harness.require_prerequisites(args)
    d = harness.Dovecot(args, fail_policy="open", include_reason=True).start()
    try:
        cli_demo(d.cli)
        say(f"Dovecot on 127.0.0.1 (IMAP {d.ports['imap']}, POP3 {d.ports['pop3']})")
        reply, c = d.imap_login("bob@example.com")
        c.close()
        show("IMAP login bob (not suspended):", reply)
        d.suspend("bob@example.com", "imap", "--reason", "abuse report #42")
        reply, c = d.imap_login("bob@example.com")
        c.close()
        show("after `suspend bob --service imap`:", reply)
        reply, c = d.imap_login("bob@example.com", password="wrong")
        c.close()
        show("same, wrong password (nothing revealed):", reply)
        reply, c = d.pop3_login("bob@example.com")
        c.close()
        show("POP3 login bob (pop3 not suspended):", reply)
        reply, c = d.imap_login("bob@example.com", source="127.0.0.2")
        c.close()
        show("IMAP from the webmail host 127.0.0.2:", reply)
        d.unsuspend("bob@example.com")
        say("A live IMAP IDLE session ends when its service is suspended")
        reply, c = d.imap_login("carol@example.org")
        c.send("b SELECT INBOX")
        c.read_tagged("b")
        c.send("c IDLE")
        c.read_until(lambda l: l.startswith("+"))
        show("carol is in IDLE:", "+ idling")
        started = time.monotonic()
        d.suspend("carol@example.org", "imap", "--reason", "compromised password")
        bye = c.read_until(lambda l: l.startswith("* BYE"))
        c.close()
        show(f"after suspend, {time.monotonic() - started:.1f} s later the client reads:", bye)
        d.unsuspend("carol@example.org")
        reply, c = d.imap_login("carol@example.org")
        c.close()
        show("after `unsuspend carol`:", reply)
    finally:
        d.stop()


def exim_demo():
    sys.path.insert(0, os.path.join(ARGS.root, "tests", "exim"))
    import eximtest
    eximtest.use_build(ARGS.build)
    env = eximtest.Env("demo")
    env.start_daemon()
    try:
        say(f"Exim on 127.0.0.1:{env.port} with mailsuspend.so and the Exim snippets as installed")
        env.cli("suspend", "alice@example.com", "--service", "send", "--reason", "spam run")
        out = env.send("alice@example.com", ["bob@example.com"], user="alice@example.com")
        show("alice (send suspended) over SMTP AUTH, MAIL:", f"{out.mail[0]} {eximtest.reply_text(out.mail)}")
        env.cli("unsuspend", "alice@example.com")
        for mode in ("deliver", "discard", "reject", "queue"):
            rcpt = {"deliver": "carol", "discard": "dave", "reject": "erin", "queue": "frank"}[mode]
            env.cli("suspend", f"{rcpt}@example.com", "--service", "receive", "--mode", mode)
            out = env.send("zed@example.org", [f"{rcpt}@example.com", "bob@example.com"])
            if out.message_id:
                env.wait_done(out.message_id)
            code, text = out.rcpts[f"{rcpt}@example.com"]
            show(f"receive suspended, mode {mode}: RCPT reply", f"{code} {text}")
            show(f"   ... {rcpt}'s mailbox / bob's mailbox:",
                 f"{len(env.mailbox(rcpt + '@example.com'))} / {len(env.mailbox('bob@example.com'))} message(s)")
        show("queue (mode queue holds frank's mail):", f"{env.queue_count()} message(s)")
        env.cli("unsuspend", "frank@example.com")
        deadline = time.monotonic() + 20
        while not env.mailbox("frank@example.com") and time.monotonic() < deadline:
            time.sleep(0.1)
        show("after `unsuspend frank` (CLI flushes):", f"frank has {len(env.mailbox('frank@example.com'))} message(s), queue {env.queue_count()}")
        say("Exim main log, mailsuspend lines")
        for line in env.log_lines("mailsuspend")[-8:]:
            print("   " + line)
    finally:
        env.stop()
    say("Automatic send suspension: a burst over the daily limit (a second Exim with small limits)")
    import importlib.util  # tests/exim/demo.py by path: "demo" is also this script's name
    spec = importlib.util.spec_from_file_location(
        "exim_demo", os.path.join(ARGS.root, "tests", "exim", "demo.py"))
    exim_demo_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exim_demo_module)
    exim_demo_module.rate_burst()


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", required=True)
    parser.add_argument("--root", required=True)
    ARGS = parser.parse_args()
    ARGS.build = os.path.abspath(ARGS.build)
    ARGS.root = os.path.abspath(ARGS.root)
    dovecot_demo()
    exim_demo()
    say("Done. The tests (./scripts/test) assert all of this and more.")


if __name__ == "__main__":
    main()
