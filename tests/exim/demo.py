#!/usr/bin/env python3
"""A live walk-through of mailsuspend on a real Exim (for scripts/demo):
starts exim4 on loopback with the shipped snippets and shows what an SMTP
client sees, and what Exim logs, for each suspension.  Needs root.

  sudo tests/exim/demo.py --cli build/cli/mailsuspend \\
      --so build/exim-local-scan/mailsuspend.so --snippets build/conf/exim
"""
import argparse
import os
import re
import sys
import threading
import time

import eximtest
import policytest


def show(title, env, out=None, log=None):
    print(f"\n== {title}")
    if out is not None:
        print(f"   MAIL FROM -> {out.mail[0]} {eximtest.reply_text(out.mail)}")
        for rcpt, reply in out.rcpts.items():
            print(f"   RCPT TO:<{rcpt}> -> {reply[0]} {eximtest.reply_text(reply)}")
        if out.data:
            print(f"   DATA -> {out.data[0]} {out.data[1]}")
            env.wait_done(out.message_id)
    for line in env.log_lines(log) if log else []:
        print("   log: " + line.split(" ", 2)[2])


def rate_burst():
    """A burst over limits.messages_per_day on a live Exim (its own, with the
    small limits of the policy tests): exactly the limit goes out, the
    crossing message is refused, send is suspended (source rate), the abuse
    contact gets the AUP notice with evidence.txt, and other mailboxes send
    on.  Callable from scripts/demo.py once eximtest.PATHS is set."""
    env = policytest.make_env("demo-burst")
    try:
        env.start_daemon()
        print(f"\n== rate limit: limits.messages_per_day = {policytest.MESSAGES_PER_DAY}, "
              f"suspend_for = {policytest.SUSPEND_FOR}s (exim4 on 127.0.0.1:{env.port})")
        print("   alice@example.com sends a burst of 12 messages over 4 concurrent SMTP AUTH "
              "connections; bob@example.com sends meanwhile")
        results, lock = [], threading.Lock()

        def client(t):
            for n in range(3):
                out = env.send("alice@example.com", ["zed@example.com"], user="alice@example.com",
                               subject=f"burst {t}-{n}")
                with lock:
                    results.append(out)

        workers = [threading.Thread(target=client, args=(t,)) for t in range(4)]
        for w in workers:
            w.start()
        bob = env.send("bob@example.com", ["zed@example.com"], user="bob@example.com", subject="bob")
        for w in workers:
            w.join()
        for out in results:
            refused_at, reply = ("DATA", out.data) if out.mail[0] == 250 else ("MAIL", out.mail)
            print(f"   alice: {refused_at:<4} -> {reply[0]} {eximtest.reply_text(reply)[:110]}")
        accepted = sum(1 for o in results if o.data and o.data[0] == 250)
        print(f"   accepted {accepted} of {len(results)}; bob: DATA -> {bob.data[0]}")
        send = policytest.send_state(env, "alice@example.com")
        print(f"   $ mailsuspend status alice@example.com --json  ->  send: suspended={send['suspended']} "
              f"source={send['source']} expires {send['expires'] - time.time():.0f}s from now "
              f"(attempts while suspended extend it)")
        print(f"     reason: {send['reason']}")
        env.cli("sweep")  # the timer's command: sends the notice Exim left pending
        for notice in policytest.notice_for(env, "alice@example.com"):
            evidence = policytest.evidence_of(notice) or ""
            print(f"   AUP notice to {notice['To']}: {notice['Subject']}")
            print(f"     evidence.txt: {len(evidence)} octets, "
                  f"{evidence.count('Subject: burst')} sample message(s)")
        for line in env.log_lines(r"mailsuspend: (send of|send refused|AUP)")[:4]:
            print("   log: " + line.split(" ", 2)[2][:150])
        policytest.sleep_past(send["expires"])
        out = env.send("alice@example.com", ["zed@example.com"], user="alice@example.com")
        print(f"   after {policytest.SUSPEND_FOR}s without attempts the suspension has expired: "
              f"MAIL -> {out.mail[0]}; the counts stay in the 24h window, so the next "
              f"message crosses again: DATA -> {out.data[0] if out.data else '-'} "
              f"(automatic suspension 2; with escalate_after = {policytest.ESCALATE_AFTER} "
              f"the next one is locked)")
    finally:
        env.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    parser.add_argument("--cli", default=os.path.join(root, "build", "cli", "mailsuspend"))
    parser.add_argument("--so", default=os.path.join(root, "build", "exim-local-scan", "mailsuspend.so"))
    parser.add_argument("--snippets", default=os.path.join(root, "build", "conf", "exim"))
    args = parser.parse_args()
    eximtest.PATHS.update(cli=args.cli, so=args.so, snippets=args.snippets)
    env = eximtest.Env("demo", default_mode="queue")
    try:
        env.start_daemon()
        print(f"exim4 listening on 127.0.0.1:{env.port}, files in {env.dir}")
        cli = lambda *a: print("   $ mailsuspend " + " ".join(a) + "\n     " + env.cli(*a).stdout.strip())

        print("\n== sending: alice is send-suspended")
        cli("suspend", "alice@example.com", "--service", "send", "--reason", "spam run")
        show("alice authenticates and sends", env,
             env.send("alice@example.com", ["zed@example.com"], user="alice@example.com"),
             r"send refused sender=alice")

        for mode, user in (("deliver", "bob"), ("discard", "carol"), ("reject", "dave"), ("queue", "erin")):
            print(f"\n== receiving: {user} is receive-suspended, mode {mode}")
            cli("suspend", f"{user}@example.com", "--service", "receive", "--mode", mode)
            out = env.send("friend@remote.test", [f"{user}@example.com", "zed@example.com"],
                           subject=f"for {user}")
            show(f"mail to {user} and zed", env, out, rf"mailsuspend: .*{user}@example.com|{user}@example.com R=")
            print(f"   {user}'s mailbox: {len(env.mailbox(user + '@example.com'))} message(s); "
                  f"zed's: {len(env.mailbox('zed@example.com'))}")
        print("\n== the queue (erin's message is held)")
        print(re.sub(r"^", "   ", env.queue(), flags=re.M))
        cli("unsuspend", "erin@example.com", "--service", "receive")
        print(f"   erin's mailbox now: {len(env.mailbox('erin@example.com'))} message(s); "
              f"queue: {env.queue_count()} message(s)")
    finally:
        env.stop()
    rate_burst()


if __name__ == "__main__":
    main()
