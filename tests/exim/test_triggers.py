#!/usr/bin/env python3
"""Domain-level limits and the unknown-recipient trigger (issue 16, items 3
and 2) against the real Exim with the shipped snippets: each fires at its
threshold and not one below it, suspends send of the right target (the
domain, scope domain; the mailbox) with source rate, its limit in the reason
and its own reject text, is audited as Exim's, lifts by itself after
limits.suspend_for and escalates like the mailbox limits.

Every other setting is the default (mailsuspend.conf's limits.* included):
the senders authenticate as mailboxes of domains of their own (SMTP AUTH
accepts any id), so no other test's counts meet theirs."""
import json
import re

import eximtest
import policytest as pt
from eximtest import EximTestCase, reply_text

DOMAIN_MESSAGES_PER_HOUR = 4
DOMAIN_OFFDOMAIN_PER_DAY = 6
UNKNOWN_PER_HOUR = 3
SUSPEND_FOR = 3  # seconds
ESCALATE_AFTER = 3  # the default, written out because test_escalation counts on it

CONF = f"""
limits: {{
  # The limits under test (0 = off by default), small so that a handful of
  # messages reach them.
  domain_messages_per_hour = {DOMAIN_MESSAGES_PER_HOUR};
  domain_offdomain_recipients_per_day = {DOMAIN_OFFDOMAIN_PER_DAY};
  unknown_recipients_per_hour = {UNKNOWN_PER_HOUR};
  # Seconds instead of the default 24h, so the automatic lift can be watched.
  suspend_for = "{SUSPEND_FOR}s";
  escalate_after = {ESCALATE_AFTER};
}};
spam: {{
  # The sweep sends the AUP notices through this stand-in, not the host's sendmail.
  default_abuse_contact = "abuse@example.net";
  sendmail_command = "{{dir}}/notice-mta -t -oi";
}};
"""

DOMAIN_TEXT = ("Permanent Failure: Sending mail from your domain has been suspended as a high volume of "
               "mail has been sent from its accounts recently. Please contact your IT administrator")
UNKNOWN_TEXT = ("Permanent Failure: Your ability to send new mail has been suspended as your account "
                "has addressed many recipients that do not exist. Please contact your IT administrator")


class TriggerTest(EximTestCase):
    env_options = {"ms_extra": CONF}

    @classmethod
    def prepare(cls):
        pt.write_notice_mta(cls.env)

    def submit(self, user, rcpts=("zed@example.com",), source="127.0.0.1", subject="m"):
        return self.env.send(user, list(rcpts), user=user, source=source, subject=subject)

    def assertAccepted(self, out):
        self.assertEqual(out.mail[0], 250, out)
        self.assertIsNotNone(out.data, out)
        self.assertEqual(out.data[0], 250, out)

    def assertRefusedAtData(self, out, text):
        self.assertEqual(out.mail[0], 250, out)
        self.assertEqual(out.data[0], 550, out)
        self.assertEqual(reply_text(out.data), "5.7.13 " + text)

    def assertRefusedAtMail(self, out, text):
        self.assertEqual(out.mail[0], 550, out)
        self.assertEqual(reply_text(out.mail), "5.7.13 " + text)

    def suspensions(self, target):
        return [a for a in pt.audit(self.env) if a.get("target") == target and a.get("action") == "suspend"]

    def auto_suspensions(self, cause):
        """mailsuspend_auto_suspensions_total of cause, from `mailsuspend metrics`."""
        m = re.search(r'^mailsuspend_auto_suspensions_total\{cause="%s"\} (\d+)$' % cause,
                      self.env.cli("metrics").stdout, re.M)
        self.assertIsNotNone(m, cause)
        return int(m.group(1))

    def assertAutoSuspended(self, target, limit):
        send = pt.send_state(self.env, target)
        self.assertTrue(send["suspended"], send)
        self.assertEqual(send["source"], "rate")
        self.assertIn(f"(limits.{limit} = ", send["reason"])
        self.assertIsNotNone(send["expires"])
        audited = self.suspensions(target)
        self.assertTrue(audited)
        self.assertGreaterEqual(self.auto_suspensions(limit), 1)
        self.assertEqual(audited[-1]["actor"]["name"], "exim")
        self.assertIn(limit, audited[-1]["reason"])
        return send

    # ---- limits.domain_messages_per_hour ------------------------------------
    def test_domain_messages_per_hour(self):
        domain, senders = "@hourly.test", ["a@hourly.test", "b@hourly.test"]
        for n in range(DOMAIN_MESSAGES_PER_HOUR):  # two mailboxes, at the limit together
            self.assertAccepted(self.submit(senders[n % 2], source="127.0.0.41", subject=f"hourly-{n}"))
        self.assertFalse(pt.send_state(self.env, domain)["suspended"], "one below the threshold")
        crossing = self.submit("c@hourly.test", source="127.0.0.41", subject="hourly-x")
        self.assertRefusedAtData(crossing, DOMAIN_TEXT)
        send = self.assertAutoSuspended(domain, "domain_messages_per_hour")
        self.assertEqual(len(self.suspensions(domain)), 1)
        # `usage @domain` shows the domain's sum at its limit (the crossing message not counted).
        usage = json.loads(self.env.cli("usage", domain, "--json").stdout)["counters"]["domain_messages_per_hour"]
        self.assertEqual((usage["count"], usage["limit"]), (DOMAIN_MESSAGES_PER_HOUR, DOMAIN_MESSAGES_PER_HOUR))
        # The domain, not the mailbox that crossed: every mailbox is refused
        # at MAIL FROM with the domain's text; the scope says so.
        self.assertEqual(pt.send_state(self.env, "c@hourly.test")["scope"], "domain")
        self.assertEqual(pt.send_state(self.env, "a@hourly.test")["scope"], "domain")
        self.assertRefusedAtMail(self.submit("a@hourly.test", source="127.0.0.41"), DOMAIN_TEXT)
        self.assertTrue(self.env.wait_log(r"mailsuspend: send refused sender=a@hourly\.test service=send "
                                          r"scope=domain"))
        # Other domains send as before; the domain's users still log in and receive.
        self.assertAccepted(self.submit("a@other-hourly.test", source="127.0.0.41"))
        self.assertFalse(pt.status(self.env, domain)["services"]["imap"]["suspended"])
        # It lifts by itself after limits.suspend_for (no attempts meanwhile).
        pt.sleep_past(send["expires"])
        self.assertFalse(pt.send_state(self.env, domain)["suspended"])
        self.assertFalse(pt.send_state(self.env, "a@hourly.test")["suspended"])

    # ---- limits.domain_offdomain_recipients_per_day ---------------------------
    def test_domain_offdomain_recipients_per_day(self):
        # zed@ and heidi@example.com are in another domain than offday.test.
        domain, two = "@offday.test", ["zed@example.com", "heidi@example.com"]
        for n, sender in enumerate(("a@offday.test", "b@offday.test", "c@offday.test")):
            self.assertAccepted(self.submit(sender, two, source="127.0.0.42", subject=f"offday-{n}"))
        self.assertFalse(pt.send_state(self.env, domain)["suspended"], "6 recipients: at the threshold")
        crossing = self.submit("a@offday.test", ["ivan@example.com"], source="127.0.0.42", subject="offday-x")
        self.assertRefusedAtData(crossing, DOMAIN_TEXT)
        self.assertAutoSuspended(domain, "domain_offdomain_recipients_per_day")
        self.assertEqual(pt.send_state(self.env, "b@offday.test")["scope"], "domain")
        # The AUP notice is left pending for the domain, as for a mailbox.
        self.assertTrue(pt.notice_pending(self.env, domain))

    def test_domain_escalation_and_admin_lift(self):
        domain = "@escalate.test"
        for n in range(DOMAIN_MESSAGES_PER_HOUR):
            self.assertAccepted(self.submit(f"u{n}@escalate.test", source="127.0.0.43", subject=f"esc-{n}"))
        # The counts stay in the hour: after each lift the next message crosses
        # again; suspensions 1..3 lift by themselves, the 4th is locked.
        for round_ in range(ESCALATE_AFTER + 1):
            self.assertRefusedAtData(self.submit("u0@escalate.test", source="127.0.0.43"), DOMAIN_TEXT)
            send = self.assertAutoSuspended(domain, "domain_messages_per_hour") \
                if round_ < ESCALATE_AFTER else pt.send_state(self.env, domain)
            if round_ < ESCALATE_AFTER:
                self.assertFalse(send["locked"], send)
                pt.sleep_past(send["expires"])
        self.assertTrue(send["locked"], send)
        self.assertIsNone(send["expires"])
        self.assertIn("permanent", send["reason"])
        self.assertEqual(len(self.suspensions(domain)), ESCALATE_AFTER + 1)
        self.env.cli("unsuspend", domain, "--service", "send", "--admin")
        # The lift reset the domain's counts: its mailboxes send again.
        self.assertAccepted(self.submit("u1@escalate.test", source="127.0.0.43", subject="esc-lifted"))

    # ---- limits.unknown_recipients_per_hour -----------------------------------
    def spray(self, user, n, source, first=0):
        """One transaction with n non-existent local recipients and one real one."""
        rcpts = [f"nobody{first + i}@example.com" for i in range(n)] + ["zed@example.com"]
        return self.env.send(user, rcpts, user=user, source=source, subject="spray")

    def test_unknown_recipients_per_hour(self):
        user = "sprayer@guess.test"
        out = self.spray(user, UNKNOWN_PER_HOUR, "127.0.0.44")
        for i in range(UNKNOWN_PER_HOUR):  # refused at RCPT with Exim's verify message
            code, text = out.rcpts[f"nobody{i}@example.com"]
            self.assertEqual(code, 550, out)
            self.assertIn("Unrouteable address", text)
        self.assertEqual(out.rcpts["zed@example.com"][0], 250)
        self.assertAccepted(out)
        self.assertFalse(pt.send_state(self.env, user)["suspended"], "at the threshold")
        # Another sender's unknown recipients are its own.
        self.assertEqual(self.spray("other@guess.test", 1, "127.0.0.44").rcpts["nobody0@example.com"][0], 550)
        # The next one crosses: send suspended, that transaction's message refused.
        crossing = self.spray(user, 1, "127.0.0.44", first=10)
        self.assertEqual(crossing.rcpts["nobody10@example.com"][0], 550)
        self.assertRefusedAtData(crossing, UNKNOWN_TEXT)
        send = self.assertAutoSuspended(user, "unknown_recipients_per_hour")
        self.assertEqual(send["scope"], "mailbox")
        self.assertTrue(self.env.wait_log(r"mailsuspend: send suspended sender=sprayer@guess\.test "
                                          r"client=127\.0\.0\.44 at=rcpt recipient=nobody10@example\.com "
                                          r"limit=unknown_recipients_per_hour"))
        self.assertRefusedAtMail(self.submit(user, source="127.0.0.44"), UNKNOWN_TEXT)
        self.assertFalse(pt.send_state(self.env, "other@guess.test")["suspended"])
        # Lifts by itself; real recipients go out again (the unknown ones stay
        # counted for the hour: the next one suspends again).
        pt.sleep_past(pt.send_state(self.env, user)["expires"])
        self.assertAccepted(self.submit(user, source="127.0.0.44", subject="after"))
        self.assertEqual(self.spray(user, 1, "127.0.0.44", first=20).rcpts["nobody20@example.com"][0], 550)
        self.assertTrue(pt.send_state(self.env, user)["suspended"])
        self.assertEqual(len(self.suspensions(user)), 2)

    def test_unauthenticated_unknown_recipients_are_not_counted(self):
        # Inbound mail (no AUTH) to non-existent local addresses is the next
        # ACL's business (here: accepted), never counted against anyone.
        for i in range(UNKNOWN_PER_HOUR + 2):
            out = self.env.send("stranger@remote.test", [f"ghost{i}@example.com"], source="127.0.0.45")
            self.assertEqual(out.rcpts[f"ghost{i}@example.com"][0], 250, out)
        self.assertFalse(pt.send_state(self.env, "stranger@remote.test")["suspended"])


class TriggersOffTest(EximTestCase):
    """The defaults: limits.unknown_recipients_per_hour off, so mailsuspend's
    ACL verifies nothing and the next ACL accepts the recipient as before."""

    def test_unknown_recipient_accepted_when_off(self):
        user = "sprayer@guess.test"
        for i in range(5):
            out = self.env.send(user, [f"nobody{i}@example.com"], user=user, source="127.0.0.46")
            self.assertEqual(out.rcpts[f"nobody{i}@example.com"][0], 250, out)
        self.assertFalse(pt.send_state(self.env, user)["suspended"])


if __name__ == "__main__":
    eximtest.main()
