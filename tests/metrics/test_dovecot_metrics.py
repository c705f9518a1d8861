#!/usr/bin/env python3
"""`mailsuspend metrics` against the real Dovecot: each event made here
(a denied IMAP login, an IDLE session ended by a suspension, a login decided
by the fail policy with the store moved away) moves its counter by exactly
one and nothing else moves; the counters survive a restart of Dovecot.  The
output is read with prometheus_client's parser.  Shipped snippet, default
groups and modes (tests/dovecot/harness.py); only ports and paths differ.

    test_dovecot_metrics.py --cli PATH --modules DIR --snippet FILE
"""
import argparse
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dovecot"))
import harness  # noqa: E402
import scrape  # noqa: E402
from harness import LOGIN_DENIED  # noqa: E402

ARGS = None
ALICE, BOB, CAROL, DAVE = harness.USERS
IMAP_DENIED = f"a NO [CONTACTADMIN] {LOGIN_DENIED}"
_sources = iter(f"127.9.{a}.{b}" for a in range(1, 255) for b in range(1, 255))


def fresh_source():
    """Dovecot's anvil delays repeated failed logins from one address."""
    return next(_sources)


class DovecotMetrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_prerequisites(ARGS)
        cls.server = harness.Dovecot(ARGS).start()
        cls.store = os.path.join(cls.server.tmp, "store", "store")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        for target in (ALICE, BOB, CAROL, DAVE):
            self.server.cli("unsuspend", target, "--service", "all", "--admin", check=False)

    def tearDown(self):
        self.assertTrue(self.server.alive(), "dovecot died:\n" + self.server.log_text())

    def scrape(self, textfile=False):
        return scrape.scrape(ARGS.cli, self.server.config, textfile)

    def denied_login(self, user):
        reply, conn = self.server.imap_login(user, source=fresh_source())
        conn.close()
        self.assertEqual(reply, IMAP_DENIED)

    def test_every_family_parses_with_its_type(self):
        for textfile in (False, True):
            s = self.scrape(textfile)
            for name, kind in scrape.FAMILIES.items():
                self.assertIn(name, s.families, s.text)
                self.assertEqual(s.families[name].type, kind, name)
            self.assertEqual(s.value("mailsuspend_store_up"), 1)
            self.assertEqual(s.value("mailsuspend_counters_up", host="dovecot"), 1)
            self.assertEqual(s.value("mailsuspend_counters_up", host="exim"), 1)

    def test_suspended_targets_follow_the_store(self):
        self.server.suspend(DAVE, "imap,pop3")
        self.server.suspend("@example.org", "imap")
        s = self.scrape()
        self.assertEqual(s.value("mailsuspend_suspended_targets", service="imap", source="admin"), 2)
        self.assertEqual(s.value("mailsuspend_suspended_targets", service="pop3", source="admin"), 1)
        self.assertEqual(s.value("mailsuspend_suspended_targets", service="send", source="admin"), 0)
        self.server.cli("unsuspend", "@example.org", "--service", "all")

    def test_denied_imap_login_counts_once(self):
        self.server.suspend(BOB, "imap")
        before = self.scrape()
        self.denied_login(BOB)
        after = self.scrape()
        self.assertEqual(scrape.changes(before, after), {("mailsuspend_logins_denied_total", "imap"): 1})

    def test_ended_idle_session_counts_once(self):
        reply, conn = self.server.imap_login(ALICE)
        with conn:
            self.assertTrue(reply.startswith("a OK "), reply)
            conn.send("i IDLE")
            conn.read_until(lambda line: line.startswith("+"))
            before = self.scrape()
            self.server.suspend(ALICE, "imap")
            lines = conn.closed_after(5.0)
            self.assertIn(f"* BYE [ALERT] {LOGIN_DENIED}", lines, conn.transcript)
        after = self.scrape()
        self.assertEqual(scrape.changes(before, after), {("mailsuspend_sessions_ended_total", "imap"): 1})

    def test_ended_pop3_session_counts_once(self):
        reply, conn = self.server.pop3_login(DAVE)
        with conn:
            self.assertTrue(reply.startswith("+OK"), reply)
            before = self.scrape()
            self.server.suspend(DAVE, "pop3")
            self.assertEqual(conn.closed_after(5.0), [f"-ERR {LOGIN_DENIED}"], conn.transcript)
        after = self.scrape()
        self.assertEqual(scrape.changes(before, after), {("mailsuspend_sessions_ended_total", "pop3"): 1})

    def test_fail_policy_decision_counts_once(self):
        self.server.suspend(CAROL, "imap")
        before = self.scrape()
        os.rename(self.store, self.store + ".away")
        try:
            time.sleep(1.5)  # the auth process looks for a replaced store once a second
            reply, conn = self.server.imap_login(CAROL, source=fresh_source())
            conn.close()
            self.assertTrue(reply.startswith("a OK "), reply)  # the shipped fail policy: open
        finally:
            os.rename(self.store + ".away", self.store)
        after = self.scrape()
        self.assertEqual(scrape.changes(before, after),
                         {("mailsuspend_fail_policy_decisions_total", "host=dovecot,policy=open"): 1})
        time.sleep(1.5)  # back for the next test

    def test_counters_survive_a_restart_of_dovecot(self):
        self.server.suspend(BOB, "imap")
        self.denied_login(BOB)
        before = self.scrape()
        self.assertGreaterEqual(before.value("mailsuspend_logins_denied_total", service="imap"), 1)
        self.server.restart()
        self.assertEqual(scrape.changes(before, self.scrape()), {})
        self.denied_login(BOB)
        self.assertEqual(scrape.changes(before, self.scrape()), {("mailsuspend_logins_denied_total", "imap"): 1})


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--cli", required=True)
    parser.add_argument("--modules", required=True)
    parser.add_argument("--snippet", required=True)
    ARGS, rest = parser.parse_known_args()
    ARGS.cli = os.path.abspath(ARGS.cli)
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
