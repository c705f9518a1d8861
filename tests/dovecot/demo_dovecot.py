#!/usr/bin/env python3
"""Shows a newcomer what mailsuspend does to Dovecot: starts the real
Dovecot on loopback with the built modules, then prints what IMAP and POP3
clients see while a mailbox is suspended and unsuspended, including a live
IDLE session being ended.  For ./scripts/demo; run as root:

    demo_dovecot.py --cli BUILD/cli/mailsuspend --modules BUILD/dovecot-plugin \
                    --snippet conf/dovecot/95-mailsuspend.conf
"""
import argparse
import sys

import harness

USER = "alice@example.com"


def show(title, conn):
    print(f"\n--- {title}")
    for line in conn.transcript:
        print("   " + line.replace(harness.PASSWORD, "*****"))
    conn.close()


def run_cli(server, *argv):
    res = server.cli(*argv)
    print(f"\n$ mailsuspend {' '.join(argv)}\n   {res.stdout.strip()}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cli", required=True)
    p.add_argument("--modules", required=True)
    p.add_argument("--snippet", required=True)
    args = p.parse_args()
    harness.require_prerequisites(args)
    server = harness.Dovecot(args, include_reason=True).start()
    try:
        _, conn = server.imap_login(USER)
        show("IMAP login, not suspended", conn)

        _, idle = server.imap_login(USER)
        idle.send("s SELECT INBOX")
        idle.read_tagged("s")
        idle.send("i IDLE")
        idle.read_until(lambda l: l.startswith("+"))

        run_cli(server, "suspend", USER, "--service", "imap", "--reason", "unpaid invoice")
        _, conn = server.imap_login(USER)
        show("IMAP login, imap suspended", conn)
        _, conn = server.pop3_login(USER)
        show("POP3 login, imap suspended (pop3 is not)", conn)
        _, conn = server.imap_login(USER, "wrong-password", "127.0.0.9")
        show("IMAP login with a wrong password, imap suspended", conn)
        idle.closed_after(harness.CLIENT_TIMEOUT)
        show("the IMAP session that was idling when imap was suspended", idle)

        run_cli(server, "unsuspend", USER, "--service", "imap")
        _, conn = server.imap_login(USER)
        show("IMAP login after unsuspend", conn)
        print("\n--- Dovecot's log lines from mailsuspend")
        for line in server.log_text().splitlines():
            if "mailsuspend" in line:
                print("   " + line)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
