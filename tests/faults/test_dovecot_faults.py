#!/usr/bin/env python3
"""Store faults under a running Dovecot (real Debian dovecot, IMAP/POP3
logins over loopback and one live IMAP session), for one fail policy:

    test_dovecot_faults.py --cli C --modules D --snippet F --helper H --policy open|closed

For every fault in faults.py: while the store is broken, logins are
answered per the policy (never an internal error, never a hang), the live
session is kept (open) or ended cleanly (closed), Dovecot's master stays up,
the outage is logged once per Dovecot process; after recovery with the CLI,
without restarting Dovecot, a suspension made then counts at the next login.
"""
import argparse
import os
import re
import sys
import time
import unittest

import faults
import harness
import test_dovecot
from test_dovecot import AUTH_FAILED_IMAP, IMAP_DENIED, fresh_source

ARGS = None
ALICE, BOB, CAROL, DAVE = harness.USERS
LOGINS = 3           # per kind and fault: enough to tell "once" from "per login"
IMAP_REFUSED = "a NO [CONTACTADMIN] "
POP3_REFUSED = "-ERR [AUTH] "
UNAVAILABLE = "mailsuspend: store unavailable ("


class DovecotFaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_prerequisites(ARGS)
        cls.server = harness.Dovecot(ARGS, fail_policy=ARGS.policy).start()
        cls.master = cls.server.proc.pid
        cls.cli = faults.Cli(ARGS.cli, cls.server.config)
        cls.log_counts = {}
        cls.log_lines = {}

    @classmethod
    def tearDownClass(cls):
        for name, (logins, lines) in cls.log_counts.items():
            print(f"FIGURE dovecot {ARGS.policy} {name}: {logins} logins, "
                  f"{lines} 'store unavailable' log line(s)", file=sys.stderr)
        cls.server.stop()

    # -- probes ---------------------------------------------------------
    def imap(self, user):
        reply, conn = self.server.imap_login(user, source=fresh_source())
        conn.close()
        return reply

    def pop3(self, user):
        reply, conn = self.server.pop3_login(user, source=fresh_source())
        conn.close()
        return reply

    def assertLogins(self, alice_ok, bob_ok):
        """LOGINS rounds of: IMAP alice, IMAP bob, POP3 bob, and a wrong
        password (always a plain failure).  Returns how many logins ran."""
        for _ in range(LOGINS):
            for user, ok in ((ALICE, alice_ok), (BOB, bob_ok)):
                reply = self.imap(user)
                if ok:
                    self.assertTrue(reply.startswith("a OK "), (user, reply))
                else:
                    self.assertTrue(reply.startswith(IMAP_REFUSED), (user, reply))
            reply = self.pop3(BOB)
            self.assertTrue(reply.startswith("+OK" if bob_ok else POP3_REFUSED), reply)
            reply, conn = self.server.imap_login(DAVE, "wrong", fresh_source())
            conn.close()
            self.assertEqual(reply, AUTH_FAILED_IMAP)
        return 4 * LOGINS

    def live_session(self):
        reply, conn = self.server.imap_login(CAROL, source=fresh_source())
        self.assertTrue(reply.startswith("a OK "), reply)
        conn.send("s SELECT INBOX")
        self.assertTrue(conn.read_tagged("s").startswith("s OK"), conn.transcript)
        conn.send("i IDLE")
        conn.read_until(lambda l: l.startswith("+"))
        return conn

    def assertSessionAlive(self, conn):
        conn.send("DONE")
        self.assertTrue(conn.read_tagged("i").startswith("i OK"), conn.transcript)
        conn.send("n NOOP")
        self.assertTrue(conn.read_tagged("n").startswith("n OK"), conn.transcript)

    def assertMasterUp(self):
        self.assertTrue(self.server.alive(), "dovecot died:\n" + self.server.log_text()[-3000:])
        self.assertEqual(self.server.proc.pid, self.master)
        log = self.server.log_text()
        for bad in ("Fatal:", "Panic:", "killed with signal", "dumped core"):
            self.assertNotIn(bad, log, log[-3000:])

    # -- one fault ------------------------------------------------------
    def run_fault(self, fault):
        server = self.server
        server.suspend(ALICE, "imap", "--reason", "fault baseline")
        self.assertLogins(False, True)
        conn = self.live_session()
        before = len(server.log_text())
        fault.apply()
        try:
            with conn:
                self.check_during(fault, conn, before)
        finally:
            fault.recover()
            faults.settle()
        self.check_recovered(fault.keeps_state)

    def check_during(self, fault, conn, before):
        faults.settle()
        closed = ARGS.policy == "closed"
        time.sleep(1.5)  # the live session's timer re-checks meet the broken store
        if fault.degrades and closed and not isinstance(fault, faults.WriterKilledMidWrite):
            # closed: a session that cannot be checked any more is ended
            # cleanly (a BYE, never a hang or a crash)
            lines = conn.closed_after(test_dovecot.EVENTUALLY)
            self.assertIn(f"* BYE [ALERT] {harness.SUSPENDED}", lines, conn.transcript)
        else:
            self.assertSessionAlive(conn)
        if not fault.degrades:
            still_waiting, rc, out = fault.while_applied()
            self.assertTrue(still_waiting, "a CLI change did not wait for the held lock")
            self.assertEqual(rc, 0, out)
            self.assertLogins(False, True)
            logged = [l for l in self.server.log_text()[before:].splitlines() if UNAVAILABLE in l]
            self.assertEqual(logged, [], "a held lock must not make the store unavailable")
        else:
            if isinstance(fault, faults.WriterKilledMidWrite):
                logins = self.assertLogins(not closed, True)
            else:
                logins = self.assertLogins(not closed, not closed)
            logged = [l for l in self.server.log_text()[before:].splitlines() if UNAVAILABLE in l]
            self.log_counts[fault.name] = (logins, len(logged))
            self.log_lines[fault.name] = logged
            self.assertTrue(logged, f"{fault.name}: the outage was not logged")
            self.assertTrue(all(("fail policy " + ARGS.policy) in l for l in logged), logged)
        self.assertMasterUp()

    def check_recovered(self, keeps_state):
        server = self.server
        self.assertLogins(not keeps_state, True)
        server.suspend(BOB, "imap")
        self.assertEqual(self.imap(BOB), IMAP_DENIED)
        server.unsuspend(BOB, "--service", "imap")
        server.unsuspend(ALICE, "--service", "imap")
        self.assertTrue(self.imap(ALICE).startswith("a OK "))
        self.assertMasterUp()




def test_zz_one_log_line_per_outage(self):
    """Runs last: each outage logged once per Dovecot process that met it
    (auth, the live session), never once per login: at most 3 lines for
    the 12 logins of a fault."""
    self.assertTrue(self.log_counts, "no fault ran")
    many = {k: v for k, v in self.log_counts.items() if v[1] > 3}
    self.assertEqual(many, {}, "fault: (logins, 'store unavailable' lines)")
    # at most one line per Dovecot process: the prefix names the process
    # ("auth", or "imap(user)<pid><session>" for a mail process)
    twice = {}
    for name, lines in self.log_lines.items():
        prefixes = [re.sub(r": (Error|Warning|Info): .*", "", l).split(" ", 3)[-1] for l in lines]
        if len(prefixes) != len(set(prefixes)):
            twice[name] = lines
    self.assertEqual(twice, {}, "a process logged one outage more than once")


DovecotFaults.test_zz_one_log_line_per_outage = test_zz_one_log_line_per_outage


def make_test(kind):
    def test(self):
        store_dir = os.path.join(self.server.tmp, "store")
        fault = {f.name: f for f in faults.all_faults(
            store_dir, self.cli, ARGS.helper, self.server.config, ALICE)}[kind]
        self.run_fault(fault)
    return test


for _kind in ("deleted", "truncated-in-place", "truncated-renamed", "garbage", "newer-layout",
              "unreadable-mode", "wrong-group", "writer-killed-holding-lock",
              "writer-killed-mid-write"):
    setattr(DovecotFaults, "test_" + _kind.replace("-", "_"), make_test(_kind))


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    for opt in ("--cli", "--modules", "--snippet", "--helper"):
        parser.add_argument(opt, required=True)
    parser.add_argument("--policy", choices=("open", "closed"), required=True)
    parser.add_argument("-k", dest="pattern")
    ARGS = parser.parse_args()
    test_dovecot.ARGS = ARGS
    loader = unittest.TestLoader()
    if ARGS.pattern:
        loader.testNamePatterns = [f"*{ARGS.pattern}*"]
    suite = loader.loadTestsFromTestCase(DovecotFaults)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() and not result.skipped and result.testsRun else 1


if __name__ == "__main__":
    sys.exit(main())
