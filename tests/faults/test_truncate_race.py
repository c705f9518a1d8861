#!/usr/bin/env python3
"""The store truncated in place (truncate(2)) below its slot table while a
long-lived mail process maps it, and that process looks up again before its
once-a-second re-check (the C handle's StoreReader::replaced()):

 - Exim: one SMTP session, MAIL FROM, RSET, truncate, MAIL FROM again;
 - Dovecot: a login (the auth process maps the store), truncate, a login.

Both must be answered per store.fail_policy (open here).  A host process
must not die: a SIGBUS in Exim's receiving process drops the connection
without a reply or a log line; in Dovecot's auth process it fails every
login in flight, whatever the policy.

    test_truncate_race.py --cli C --so S --snippets D --modules M --snippet F
"""
import argparse
import base64
import os
import socket
import sys
import time
import unittest

import faults
import eximtest
import harness
from test_dovecot import fresh_source

ARGS = None
HEADER_SIZE = 4096   # store_layout.hpp kHeaderSize: the slots start right after


class EximSession(eximtest.EximTestCase):
    def test_second_mail_from_after_truncation_is_answered(self):
        env = self.env
        with socket.create_connection(("127.0.0.1", env.port), timeout=20) as s:
            f = s.makefile("rb")

            def command(line):
                if line:
                    s.sendall(line + b"\r\n")
                out = b""
                while True:
                    got = f.readline()
                    out += got
                    if not got or got[3:4] != b"-":
                        return out

            command(None)
            command(b"EHLO client.test")
            token = base64.b64encode(b"\0bob@example.com\0" + eximtest.SECRET.encode())
            self.assertTrue(command(b"AUTH PLAIN " + token).startswith(b"235"))
            self.assertTrue(command(b"MAIL FROM:<bob@example.com>").startswith(b"250"))
            self.assertTrue(command(b"RSET").startswith(b"250"))
            os.truncate(os.path.join(env.dir, "store", "store"), HEADER_SIZE)
            reply = command(b"MAIL FROM:<bob@example.com>")
            self.assertTrue(reply.startswith(b"250"),
                            f"the receiving Exim process answered {reply!r} "
                            "(empty: it died, SIGBUS on the truncated mapping)")
        self.assertIsNone(env.daemon.poll())


class DovecotAuth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_prerequisites(ARGS)
        cls.server = harness.Dovecot(ARGS, fail_policy="open").start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def restore_store(self):
        """A fresh store (another test may have truncated it), followed by
        every Dovecot process."""
        store = os.path.join(self.server.tmp, "store", "store")
        if os.path.exists(store):
            os.rename(store, store + ".damaged")
        self.server.cli("init")
        time.sleep(faults.SETTLE)

    def test_login_after_truncation_is_answered_per_policy(self):
        server = self.server
        self.restore_store()
        start = len(server.log_text())
        reply, conn = server.imap_login("bob@example.com", source=fresh_source())
        conn.close()
        self.assertTrue(reply.startswith("a OK "), reply)
        os.truncate(os.path.join(server.tmp, "store", "store"), HEADER_SIZE)
        reply, conn = server.imap_login("bob@example.com", source=fresh_source())
        conn.close()
        time.sleep(0.5)
        log = server.log_text()[start:]
        self.assertNotIn("killed with signal", log, log[-2000:])
        self.assertTrue(reply.startswith("a OK "), f"{reply!r} (fail policy open)\n{log[-2000:]}")

    def test_live_imap_session_command_after_truncation(self):
        """A live session checks on every command (after its first timer
        re-check): the command right after the truncation must be served
        (open) or the session ended with a BYE, never a dead process."""
        server = self.server
        self.restore_store()
        start = len(server.log_text())
        reply, conn = server.imap_login("carol@example.org", source=fresh_source())
        with conn:
            self.assertTrue(reply.startswith("a OK "), reply)
            conn.send("s SELECT INBOX")
            self.assertTrue(conn.read_tagged("s").startswith("s OK"), conn.transcript)
            time.sleep(faults.SETTLE)  # past the first timer re-check
            conn.send("n NOOP")
            self.assertTrue(conn.read_tagged("n").startswith("n OK"), conn.transcript)
            os.truncate(os.path.join(server.tmp, "store", "store"), HEADER_SIZE)
            conn.send("m NOOP")
            line = conn.read_line()
            while line is not None and not line.startswith(("m ", "* BYE")):
                line = conn.read_line()
        time.sleep(0.5)
        log = server.log_text()[start:]
        self.assertNotIn("killed with signal", log, log[-2000:])
        self.assertIsNotNone(line, "the imap process closed the session without a word")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    for opt in ("--cli", "--so", "--snippets", "--modules", "--snippet"):
        parser.add_argument(opt, required=True)
    ARGS = parser.parse_args()
    eximtest.PATHS.update(cli=ARGS.cli, so=ARGS.so, snippets=ARGS.snippets)
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(c) for c in (EximSession, DovecotAuth))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() and not result.skipped and result.testsRun else 1


if __name__ == "__main__":
    sys.exit(main())
