#!/usr/bin/env python3
"""The failed-share trigger (issue 16, item 2, third trigger) against the
real Exim with the shipped snippets: remote recipients of our accounts'
mail really bounce (550) or defer (451) at a loopback SMTP sink
(smtpsink.py), Exim raises its delivery events, the shipped event_action
reports them, and the share of the hour's outcomes over
limits.failed_share_percent suspends send of the mailbox, or of its domain
(scope domain), with source rate, its own reject text and audit and metrics
cause; at the threshold nothing happens.  A deferral counts once per
recipient domain and hour, and a retry counts nothing.

Every other setting is the default (limits.failed_share_min_recipients = 20
included): the senders authenticate as mailboxes of domains of their own
(SMTP AUTH accepts any id), so no test's counts meet another's."""
import re
import time

import eximtest
import policytest as pt
from eximtest import EximTestCase, reply_text
from smtpsink import SmtpSink

PERCENT = 50
MIN_RECIPIENTS = 20  # the default of limits.failed_share_min_recipients

CONF = f"""
limits: {{
  # The trigger under test is off by default (0); more than half of the
  # last hour's remote recipients failing suspends.
  failed_share_percent = {PERCENT};
}};
"""

SHARE_TEXT = ("Permanent Failure: Sending mail has been suspended as much of the mail sent recently "
              "could not be delivered. Please contact your IT administrator")


def recipients(prefix, n, domain="far.test"):
    return [f"{prefix}{i}@{domain}" for i in range(n)]


class SinkTestCase(EximTestCase):
    """An EximTestCase whose remote_smtp delivers to a running SmtpSink."""

    @classmethod
    def setUpClass(cls):
        cls.sink = SmtpSink()
        cls.env_options = dict(cls.env_options, remote_port=cls.sink.port)
        try:
            super().setUpClass()
        except BaseException:
            cls.sink.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.sink.stop()

    def submit(self, user, rcpts, subject="m"):
        """One authenticated submission; waits until Exim's first delivery
        attempt of it is over (every recipient delivered, bounced or deferred)."""
        out = self.env.send(user, list(rcpts), user=user, source="127.0.0.51", subject=subject)
        self.assertEqual(out.data[0] if out.data else None, 250, out)
        self.env.wait_done(out.message_id)
        return out

    def wait_suspended(self, target):
        """send of target once the delivery process's writer has suspended it
        (it finishes on its own after the delivery), else its state."""
        deadline = time.monotonic() + eximtest.WAIT
        while True:
            send = pt.send_state(self.env, target)
            if send["suspended"] or time.monotonic() > deadline:
                return send
            time.sleep(0.1)

    def settle(self):
        """Lets a suspension that should not happen have its chance to."""
        self.env.wait_idle()
        time.sleep(1)


class FailedShareTest(SinkTestCase):
    env_options = {"ms_extra": CONF}

    def auto_suspensions(self):
        m = re.search(r'^mailsuspend_auto_suspensions_total\{cause="failed_share_percent"\} (\d+)$',
                      self.env.cli("metrics").stdout, re.M)
        self.assertIsNotNone(m)
        return int(m.group(1))

    def assertSuspendedByShare(self, target, scope):
        send = self.wait_suspended(target)
        self.assertTrue(send["suspended"], send)
        self.assertEqual(send["source"], "rate")
        self.assertIn(f"(limits.failed_share_percent = {PERCENT})", send["reason"])
        self.assertEqual(send["scope"], scope)
        audited = [a for a in pt.audit(self.env) if a.get("target") == target and a.get("action") == "suspend"]
        self.assertEqual(len(audited), 1, audited)
        self.assertEqual(audited[0]["actor"]["name"], "exim")
        self.assertIn("failed_share_percent", audited[0]["reason"])
        return send

    def assertRefusedAtMail(self, user):
        out = self.env.send(user, ["someone@far.test"], user=user, source="127.0.0.51")
        self.assertEqual(out.mail[0], 550, out)
        self.assertEqual(reply_text(out.mail), "5.7.13 " + SHARE_TEXT)

    def test_mailbox_share(self):
        user = "m@share-box.test"
        # 20 recipients (the minimum), half bounced: 50 %, at the threshold.
        self.submit(user, recipients("bounce", 10) + recipients("ok", 10), subject="half")
        self.assertIn("bounce0@far.test", " ".join(self.env.log_lines(r"\*\* bounce0@far\.test")))
        self.settle()
        self.assertFalse(pt.send_state(self.env, user)["suspended"], "10 of 20: at the threshold")
        before = self.auto_suspensions()
        # One more bounce: 11 of 21 is over half.
        self.submit(user, ["bounce-x@far.test"], subject="over")
        send = self.assertSuspendedByShare(user, "mailbox")
        self.assertIn("11 of 21 remote recipients bounced or deferred within 1h", send["reason"])
        self.assertTrue(self.env.wait_log(r"mailsuspend: send suspended sender=m@share-box\.test at=delivery "
                                          r"recipient=bounce-x@far\.test event=msg:fail:delivery "
                                          r"limit=failed_share_percent"))
        self.assertEqual(self.auto_suspensions(), before + 1)
        self.assertRefusedAtMail(user)
        # The mailbox, not its domain (the domain's share crossed with it, but
        # the mailbox is looked at first).
        self.assertFalse(pt.send_state(self.env, "@share-box.test")["suspended"])

    def test_domain_share(self):
        # Three mailboxes, none at the minimum alone; the domain sums them.
        self.submit("a@share-dom.test", recipients("bounce", 6) + recipients("ok", 6), subject="a")
        self.submit("b@share-dom.test", recipients("bounce", 4, "near.test") + recipients("ok", 4, "near.test"),
                    subject="b")
        self.settle()
        self.assertFalse(pt.send_state(self.env, "@share-dom.test")["suspended"], "10 of 20: at the threshold")
        self.submit("c@share-dom.test", ["bounce-x@far.test"], subject="c")
        self.assertSuspendedByShare("@share-dom.test", "domain")
        # Every mailbox of the domain is refused with the trigger's text.
        self.assertEqual(pt.send_state(self.env, "a@share-dom.test")["scope"], "domain")
        self.assertEqual(pt.send_state(self.env, "c@share-dom.test")["scope"], "domain")
        self.assertRefusedAtMail("b@share-dom.test")

    def test_deferrals_count_once_per_remote_domain(self):
        user = "slow@share-defer.test"
        # One slow remote host defers all 20 recipients: one failure, not 20.
        self.submit(user, recipients("defer", 20, "slow.test"), subject="slow")
        self.assertEqual(len(self.env.log_lines(r"== defer\d+@slow\.test")), 20)
        # Its retries (forced) defer again: a retry counts nothing.
        self.env.exim("-qff")
        self.env.wait_idle()
        self.assertGreaterEqual(len(self.env.log_lines(r"== defer\d+@slow\.test")), 40)
        # 9 bounces more: 10 of 29 (with every deferral, or the retries, it
        # would be 29 of 29 or 30 of 49).
        self.submit(user, recipients("bounce", 9), subject="some bounces")
        self.settle()
        self.assertFalse(pt.send_state(self.env, user)["suspended"])
        # Deferrals from 20 different domains are 20 failures: 30 of 49 is over half.
        self.submit(user, [f"defer@d{i}.test" for i in range(20)], subject="many domains")
        self.assertSuspendedByShare(user, "mailbox")


class FailedShareOffTest(SinkTestCase):
    """The defaults: limits.failed_share_percent off.  The event_action runs
    for every delivery and reports nothing; no share suspends anyone."""

    def test_bounces_do_not_suspend_when_off(self):
        user = "m@share-off.test"
        self.submit(user, recipients("bounce", 25), subject="all bounce")
        self.assertEqual(len(self.env.log_lines(r"\*\* bounce\d+@far\.test")), 25)
        self.settle()
        self.assertFalse(pt.send_state(self.env, user)["suspended"])
        self.assertFalse(pt.send_state(self.env, "@share-off.test")["suspended"])
        self.assertEqual(self.env.panic_log(), "")


if __name__ == "__main__":
    eximtest.main()
