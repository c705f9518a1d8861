#!/usr/bin/env python3
"""Receiving while "receive" is suspended, per effective delivery mode, with a
single recipient and with a suspended recipient among others: what the SMTP
client sees, what lands in mailboxes, the queue and the log.  Also that no
user-level forwarder runs unless the mode is deliver, domain-level
suspension and the per-account --mode override (default_mode is queue)."""
import re

import eximtest
from eximtest import EximTestCase, reply_text

REJECT_TEXT = "Mailbox unavailable: the account is suspended."


class ReceiveModesTest(EximTestCase):
    env_options = {"default_mode": "queue"}

    def subjects(self, address):
        return [m.group(1) for msg in self.env.mailbox(address)
                for m in [re.search(r"^Subject: (.*)$", msg, re.M)] if m]

    def deliver(self, rcpts, subject, source="127.0.0.1"):
        out = self.env.send("outside@remote.test", rcpts, source=source, subject=subject)
        if out.data:
            self.assertEqual(out.data[0], 250, out)
            self.env.wait_done(out.message_id)
        return out

    # ---- deliver ------------------------------------------------------------
    def test_deliver_mode_delivers_and_runs_forwarders(self):
        self.env.cli("suspend", "forwarder@example.com", "--service", "receive", "--mode", "deliver")
        self.env.cli("suspend", "alice@example.com", "--service", "receive", "--mode", "deliver")
        out = self.deliver(["alice@example.com", "forwarder@example.com"], "deliver-mode")
        self.assertEqual(set(c for c, _ in out.rcpts.values()), {250})
        self.assertIn("deliver-mode", self.subjects("alice@example.com"))
        self.assertIn("deliver-mode", self.subjects("forward-target@example.com"))
        self.assertNotIn(out.message_id, self.env.queue())

    # ---- discard ------------------------------------------------------------
    def test_discard_single(self):
        self.env.cli("suspend", "bob@example.com", "--service", "receive", "--mode", "discard")
        out = self.deliver(["bob@example.com"], "discard-single")
        self.assertEqual(out.rcpts["bob@example.com"][0], 250)
        self.assertEqual(self.subjects("bob@example.com"), [])
        self.assertNotIn(out.message_id, self.env.queue())
        mid = re.escape(out.message_id)
        self.assertTrue(self.env.log_lines(
            rf"{mid} mailsuspend: discard recipient=bob@example.com id={mid} scope=mailbox"))
        self.assertTrue(self.env.log_lines(rf"{mid} => :blackhole: <bob@example.com> R=mailsuspend_receive"))

    def test_discard_mixed(self):
        self.env.cli("suspend", "carol@example.com", "--service", "receive", "--mode", "discard")
        out = self.deliver(["carol@example.com", "zed@example.com"], "discard-mixed")
        self.assertEqual(self.subjects("carol@example.com"), [])
        self.assertIn("discard-mixed", self.subjects("zed@example.com"))
        self.assertTrue(self.env.log_lines(rf"discard recipient=carol@example.com id={re.escape(out.message_id)}"))

    def test_discarded_forwarder_does_not_forward(self):
        self.env.cli("suspend", "forwarder@example.org", "--service", "receive", "--mode", "discard")
        self.deliver(["forwarder@example.org"], "discard-forward")
        self.assertNotIn("discard-forward", self.subjects("forward-target@example.com"))

    # ---- reject -------------------------------------------------------------
    def test_reject_single(self):
        self.env.cli("suspend", "dave@example.com", "--service", "receive", "--mode", "reject",
                     "--reason", "not paid")
        out = self.deliver(["dave@example.com"], "reject-single")
        code, _ = out.rcpts["dave@example.com"]
        self.assertEqual(code, 550)
        text = reply_text(out.rcpts["dave@example.com"])
        self.assertTrue(text.startswith("5.2.1 "), text)
        self.assertIn(REJECT_TEXT, text)
        self.assertIsNone(out.data)
        self.assertTrue(self.env.log_lines(
            r"mailsuspend: rcpt rejected recipient=dave@example.com scope=mailbox client=127\.0\.0\.1 at=rcpt"))
        self.assertTrue(self.env.log_lines(r"rejected RCPT <dave@example.com>: 550 5\.2\.1"))

    def test_reject_mixed(self):
        self.env.cli("suspend", "erin@example.com", "--service", "receive", "--mode", "reject")
        out = self.deliver(["erin@example.com", "zed@example.com"], "reject-mixed")
        self.assertEqual(out.rcpts["erin@example.com"][0], 550)
        self.assertEqual(out.rcpts["zed@example.com"][0], 250)
        self.assertIn("reject-mixed", self.subjects("zed@example.com"))
        self.assertEqual(self.subjects("erin@example.com"), [])

    def test_reject_over_local_smtp(self):
        self.env.cli("suspend", "frank@example.com", "--service", "receive", "--mode", "reject")
        out = self.env.local_smtp("sender@example.com", ["frank@example.com", "zed@example.com"],
                                  subject="reject-bs")
        self.assertEqual(out.rcpts["frank@example.com"][0], 550, out)
        self.assertEqual(out.data[0], 250, out)
        self.assertIn("reject-bs", self.subjects("zed@example.com"))

    def test_reject_after_acceptance_bounces(self):
        # Held in queue mode, then switched to reject: the router bounces it.
        self.env.cli("suspend", "grace@example.com", "--service", "receive", "--mode", "queue")
        out = self.env.send("sender@example.com", ["grace@example.com"], user="sender@example.com",
                            subject="reject-later")
        self.env.wait_done(out.message_id)
        self.assertIn(out.message_id, self.env.queue())
        self.env.cli("set-mode", "grace@example.com", "reject")
        self.env.exim("-Rff", "grace@example.com")
        self.assertNotIn(out.message_id, self.env.queue())
        self.assertEqual(self.subjects("grace@example.com"), [])
        self.assertTrue(self.env.log_lines(
            rf"{re.escape(out.message_id)} mailsuspend: reject recipient=grace@example.com .*at=route"))
        bounces = [m for m in self.env.mailbox("sender@example.com") if "reject-later" in m]
        self.assertEqual(len(bounces), 1)
        self.assertIn(REJECT_TEXT, bounces[0])

    def test_reject_sendmail_all_recipients_refused_after_data(self):
        self.env.cli("suspend", "judy@example.com", "--service", "receive", "--mode", "reject")
        proc = self.env.sendmail("sender@example.com", ["judy@example.com"], subject="reject-sendmail")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("5.2.1 " + REJECT_TEXT, proc.stdout + proc.stderr)
        self.assertTrue(self.env.log_lines(
            r"mailsuspend: message rejected recipients=1 first=judy@example.com scope=mailbox at=data"))
        self.assertEqual(self.subjects("judy@example.com"), [])

    # ---- queue --------------------------------------------------------------
    def test_queue_single(self):
        self.env.cli("suspend", "heidi@example.com", "--service", "receive")  # default_mode
        out = self.deliver(["heidi@example.com"], "queue-single")
        self.assertEqual(out.data[0], 250)
        self.assertEqual(self.subjects("heidi@example.com"), [])
        queue = self.env.queue()
        self.assertRegex(queue, rf"{re.escape(out.message_id)} <outside@remote.test>\n\s+heidi@example.com")
        mid = re.escape(out.message_id)
        self.assertTrue(self.env.log_lines(rf"{mid} mailsuspend: queue recipient=heidi@example.com"))
        self.assertTrue(self.env.log_lines(rf"{mid} == heidi@example.com R=mailsuspend_receive defer"))

    def test_queue_mixed_and_forwarder_held(self):
        self.env.cli("suspend", "forwarder@example.com", "--service", "receive", "--mode", "queue")
        self.env.cli("set-mode", "forwarder@example.com", "queue")
        self.env.cli("suspend", "ivan@example.com", "--service", "receive", "--mode", "queue")
        out = self.deliver(["ivan@example.com", "zed@example.com"], "queue-mixed")
        self.assertIn("queue-mixed", self.subjects("zed@example.com"))
        self.assertEqual(self.subjects("ivan@example.com"), [])
        queue = self.env.queue()
        self.assertIn(out.message_id, queue)
        self.assertRegex(queue, r"D zed@example.com")
        self.assertRegex(queue, r"\n\s+ivan@example.com")
        # Forwarder suspended in queue mode: its .forward does not run.
        self.deliver(["forwarder@example.com"], "queue-forward")
        self.assertNotIn("queue-forward", self.subjects("forward-target@example.com"))

    # ---- scope and overrides ------------------------------------------------
    def test_domain_level_receive(self):
        self.env.cli("suspend", "@example.org", "--service", "receive", "--mode", "reject")
        out = self.deliver(["judy@example.org", "zed@example.com"], "domain-reject")
        self.assertEqual(out.rcpts["judy@example.org"][0], 550)
        self.assertEqual(out.rcpts["zed@example.com"][0], 250)
        self.assertTrue(self.env.log_lines(r"rcpt rejected recipient=judy@example.org scope=domain"))
        self.env.cli("unsuspend", "@example.org", "--service", "receive")
        self.deliver(["judy@example.org"], "domain-lifted")
        self.assertIn("domain-lifted", self.subjects("judy@example.org"))

    def test_per_account_mode_override(self):
        # The default is queue (config); one mailbox overrides to discard,
        # another keeps the default.
        self.env.cli("suspend", "carol@example.org", "--service", "receive", "--mode", "discard")
        self.env.cli("suspend", "postmaster@example.com", "--service", "receive")
        out = self.deliver(["carol@example.org", "postmaster@example.com"], "override")
        mid = re.escape(out.message_id)
        self.assertTrue(self.env.log_lines(rf"{mid} mailsuspend: discard recipient=carol@example.org"))
        self.assertTrue(self.env.log_lines(rf"{mid} mailsuspend: queue recipient=postmaster@example.com"))
        # set-mode changes it for mail already held, at once: the CLI runs
        # delivery.flush_command itself.
        self.env.cli("set-mode", "postmaster@example.com", "discard")
        self.assertTrue(self.env.log_lines(rf"{mid} mailsuspend: discard recipient=postmaster@example.com"))
        self.assertNotIn(out.message_id, self.env.queue())
        self.assertEqual(self.subjects("postmaster@example.com"), [])


if __name__ == "__main__":
    eximtest.main()
