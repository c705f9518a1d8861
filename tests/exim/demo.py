#!/usr/bin/env python3
"""A live walk-through of mailsuspend on a real Exim (for scripts/demo):
starts exim4 on loopback with the shipped snippets and shows what an SMTP
client sees, and what Exim logs, for each suspension.  Needs root.

  sudo tests/exim/demo.py --cli build/cli/mailsuspend \\
      --so build/exim-local-scan/mailsuspend.so --snippets conf/exim
"""
import argparse
import os
import re
import sys

import eximtest


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    parser.add_argument("--cli", default=os.path.join(root, "build", "cli", "mailsuspend"))
    parser.add_argument("--so", default=os.path.join(root, "build", "exim-local-scan", "mailsuspend.so"))
    parser.add_argument("--snippets", default=os.path.join(root, "conf", "exim"))
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


if __name__ == "__main__":
    main()
