#!/usr/bin/env python3
"""`mailsuspend metrics` against the real Exim: each event made here moves
its counter by exactly the number of events and nothing else moves -- a
refused send, a recipient in each receive mode (deliver, discard, reject,
queue, expired), a rate-limit crossing (automatic suspension), spam reports
(the third over spam.threshold suspends), checks decided by the fail policy
with the store moved away -- and the counters survive a restart of Exim.
`sweep` records its time.  The output is read with prometheus_client's
parser.  Shipped snippets, default groups and modes (tests/exim/eximtest.py);
the limits are policytest's small ones, and delivery.queue_expiry is 2 s so
held mail expires within the test."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "exim"))
import eximtest  # noqa: E402
import policytest as pt  # noqa: E402
import scrape  # noqa: E402
from eximtest import EximTestCase  # noqa: E402


def received(mode, n=1):
    return {("mailsuspend_received_total", mode): n}


class EximMetrics(EximTestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = eximtest.Env(cls.__name__, queue_expiry="2s", ms_extra=pt.POLICY_CONF)
        pt.write_notice_mta(cls.env)
        try:
            cls.env.start_daemon()
        except BaseException:
            cls.env.stop()
            raise
        cls.store = os.path.join(cls.env.dir, "store", "store")

    def scrape(self, textfile=False):
        return scrape.scrape(eximtest.PATHS["cli"], self.env.ms_conf, textfile)

    def inbound(self, rcpts, subject, sender="outside@remote.test"):
        """Mail from outside (no identity: no send check), delivered or held."""
        out = self.env.send(sender, rcpts, subject=subject)
        if out.data:
            self.assertEqual(out.data[0], 250, out)
            self.env.wait_done(out.message_id)
        return out

    def assertMoved(self, before, expected):
        self.assertEqual(scrape.changes(before, self.scrape()), expected)

    def test_every_family_parses_with_its_type(self):
        for textfile in (False, True):
            s = self.scrape(textfile)
            for name, kind in scrape.FAMILIES.items():
                self.assertIn(name, s.families, s.text)
                self.assertEqual(s.families[name].type, kind, name)
            self.assertEqual(s.value("mailsuspend_counters_up", host="exim"), 1)
            self.assertEqual(s.value("mailsuspend_store_up"), 1)
            self.assertGreaterEqual(s.value("mailsuspend_store_generation"), 1)

    def test_refused_send(self):
        gauge = lambda s: s.value("mailsuspend_suspended_targets", service="send", source="admin")
        suspended_before = gauge(self.scrape())
        self.env.cli("suspend", "bob@example.com", "--service", "send")
        before = self.scrape()
        self.assertEqual(gauge(before), suspended_before + 1)
        out = self.env.send("bob@example.com", ["zed@example.com"], user="bob@example.com")
        self.assertEqual(out.mail[0], 550, out)
        self.assertMoved(before, {("mailsuspend_sends_refused_total", "suspended"): 1})

    def test_received_deliver(self):
        before = self.scrape()
        self.inbound(["zed@example.com"], "plain")
        self.assertMoved(before, received("deliver"))

    def test_received_discard(self):
        self.env.cli("suspend", "carol@example.com", "--service", "receive", "--mode", "discard")
        before = self.scrape()
        self.inbound(["carol@example.com"], "discarded")
        self.assertMoved(before, received("discard"))

    def test_received_reject(self):
        self.env.cli("suspend", "dave@example.com", "--service", "receive", "--mode", "reject")
        before = self.scrape()
        out = self.inbound(["dave@example.com"], "rejected")
        self.assertEqual(out.rcpts["dave@example.com"][0], 550, out)
        self.assertMoved(before, received("reject"))

    def test_received_queue_then_expired(self):
        self.env.cli("suspend", "erin@example.com", "--service", "receive", "--mode", "queue")
        before = self.scrape()
        out = self.inbound(["erin@example.com"], "held", sender="sender@example.com")
        self.assertIn(out.message_id, self.env.queue())
        self.assertMoved(before, received("queue"))
        time.sleep(3)  # past delivery.queue_expiry
        before = self.scrape()
        self.env.exim("-qff")
        self.assertNotIn(out.message_id, self.env.queue())
        # The bounce goes to the (local) sender: one more recipient delivered.
        deadline = time.monotonic() + eximtest.WAIT
        while not any("held" in m for m in self.env.mailbox("sender@example.com")):
            self.assertLess(time.monotonic(), deadline, "no bounce")
            time.sleep(0.1)
        self.env.wait_idle()
        self.assertMoved(before, {**received("expired"), **received("deliver")})

    def test_rate_limit_crossing_suspends_automatically(self):
        user = "alice@example.com"
        before = self.scrape()
        for n in range(pt.MESSAGES_PER_DAY):
            out = self.env.send(user, ["zed@example.com"], user=user, source="127.0.0.11", subject=f"r{n}")
            self.assertEqual(out.data[0], 250, out)
            self.env.wait_done(out.message_id)
        crossing = self.env.send(user, ["zed@example.com"], user=user, source="127.0.0.11", subject="over")
        self.assertEqual(crossing.data[0], 550, crossing)
        self.assertMoved(before, {("mailsuspend_auto_suspensions_total", "messages_per_day"): 1,
                                  ("mailsuspend_sends_refused_total", "rate_limit"): 1,
                                  **received("deliver", pt.MESSAGES_PER_DAY)})
        self.assertEqual(self.scrape().value("mailsuspend_suspended_targets", service="send", source="rate"), 1)

    def test_spam_reports_and_the_suspension_they_cause(self):
        before = self.scrape()
        for _ in range(pt.SPAM_THRESHOLD + 1):  # one over the threshold suspends
            self.env.cli("report-spam", "grace@example.com")
        self.assertMoved(before, {("mailsuspend_spam_reports_total", ""): pt.SPAM_THRESHOLD + 1,
                                  ("mailsuspend_auto_suspensions_total", "spam"): 1})

    def test_fail_policy_decisions_with_the_store_moved_away(self):
        before = self.scrape()
        os.rename(self.store, self.store + ".away")
        try:
            time.sleep(1.5)  # the daemon looks for a replaced store once a second
            out = self.inbound(["zed@example.com"], "unchecked")
            self.assertEqual(out.data[0], 250, out)  # the shipped fail policy: open
            # The exporter still answers: the store says it is down, the counters stand.
            down = self.scrape()
            self.assertEqual(down.value("mailsuspend_store_up"), 0)
            self.assertNotIn("mailsuspend_suspended_targets", down.families)
            self.assertEqual(down.value("mailsuspend_counters_up", host="exim"), 1)
        finally:
            os.rename(self.store + ".away", self.store)
        # The recipient is checked three times -- at RCPT (reject mode?), in
        # local_scan (every recipient rejected?) and by the router at
        # delivery -- and each is a decision of the fail policy (the daemon's
        # own probe address is never counted).  Delivered: one "deliver".
        self.assertMoved(before, {("mailsuspend_fail_policy_decisions_total", "host=exim,policy=open"): 3,
                                  **received("deliver")})
        time.sleep(1.5)  # the store back for the next test

    def test_counters_survive_a_restart_of_exim(self):
        self.env.cli("suspend", "heidi@example.com", "--service", "send")
        refused = lambda: self.env.send("heidi@example.com", ["zed@example.com"], user="heidi@example.com")
        self.assertEqual(refused().mail[0], 550)
        before = self.scrape()
        self.env.restart_daemon()
        self.assertEqual(scrape.changes(before, self.scrape()), {})
        self.assertEqual(refused().mail[0], 550)
        self.assertMoved(before, {("mailsuspend_sends_refused_total", "suspended"): 1})

    def test_sweep_records_its_time(self):
        t0 = time.time()
        self.env.cli("sweep")
        swept = self.scrape().value("mailsuspend_last_sweep_timestamp_seconds")
        self.assertGreaterEqual(swept, int(t0))
        self.assertLessEqual(swept, time.time() + 1)


if __name__ == "__main__":
    eximtest.main()
