#!/usr/bin/env python3
"""Queue mode over time: held while suspended (also across forced queue
runs), delivered by `mailsuspend unsuspend` (delivery.flush_command) without
waiting for the retry time, and bounced to the sender once it has been held
longer than delivery.queue_expiry."""
import re
import time

import eximtest
from eximtest import EximTestCase

HELD_TEXT = "Mailbox unavailable: the account is suspended."


def subjects(env, address):
    return re.findall(r"^Subject: (.*)$", "\n".join(env.mailbox(address)), re.M)


class HeldThenUnsuspendedTest(EximTestCase):
    env_options = {"default_mode": "queue"}

    def test_held_then_delivered_after_unsuspend(self):
        env = self.env
        env.cli("suspend", "alice@example.com", "--service", "receive", "--reason", "billing")
        out = env.send("outside@remote.test", ["alice@example.com", "zed@example.com"],
                       subject="held")
        env.wait_done(out.message_id)
        self.assertEqual(subjects(env, "alice@example.com"), [])
        self.assertEqual(subjects(env, "zed@example.com"), ["held"])
        self.assertIn(out.message_id, env.queue())
        # A forced queue run (ignores retry times) still holds it.
        env.exim("-qff")
        self.assertIn(out.message_id, env.queue())
        self.assertEqual(len(env.log_lines(
            rf"{re.escape(out.message_id)} == alice@example.com R=mailsuspend_receive defer")), 2)
        # Unsuspend: the CLI runs flush_command (exim -Rrff <alice's regex>), at once.
        env.cli("unsuspend", "alice@example.com", "--service", "receive")
        self.assertEqual(subjects(env, "alice@example.com"), ["held"])
        self.assertNotIn(out.message_id, env.queue())
        self.assertTrue(env.log_lines(rf"{re.escape(out.message_id)} => alice <alice@example.com>"))

    def test_unsuspend_flushes_sub_addressed_mail_too(self):
        # The store key is alice@example.com; held mail may name Alice+news@...
        env = self.env
        env.cli("suspend", "alice@example.com", "--service", "receive")
        out = env.send("outside@remote.test", ["Alice+news@Example.com"], subject="tagged")
        env.wait_done(out.message_id)
        self.assertIn(out.message_id, env.queue())
        self.assertNotIn("tagged", subjects(env, "alice@example.com"))
        env.cli("unsuspend", "alice@example.com", "--service", "receive")
        self.assertNotIn(out.message_id, env.queue())
        self.assertIn("tagged", subjects(env, "alice@example.com"))

    def test_domain_unsuspend_flushes_every_mailbox(self):
        env = self.env
        env.cli("suspend", "@example.org", "--service", "receive")
        ids = [env.send("outside@remote.test", [f"{u}@example.org"], subject=f"dom-{u}").message_id
               for u in ("bob", "carol")]
        for i in ids:
            env.wait_done(i)
            self.assertIn(i, env.queue())
        env.cli("unsuspend", "@example.org", "--service", "receive")
        for u in ("bob", "carol"):
            self.assertEqual(subjects(env, f"{u}@example.org"), [f"dom-{u}"])
        self.assertEqual(env.queue_count(), 0)


class QueueExpiryTest(EximTestCase):
    # Held mail older than 2 s bounces (Exim's own retry rule: 10 days).
    env_options = {"default_mode": "queue", "queue_expiry": "2s"}

    def test_expired_mail_bounces_to_sender(self):
        env = self.env
        env.cli("suspend", "dave@example.com", "--service", "receive")
        out = env.send("sender@example.com", ["dave@example.com"], user="sender@example.com",
                       subject="expiring")
        env.wait_done(out.message_id)
        self.assertIn(out.message_id, env.queue())
        time.sleep(3)  # let the message age past queue_expiry (no timing is asserted)
        env.exim("-qff")
        self.assertNotIn(out.message_id, env.queue())
        mid = re.escape(out.message_id)
        self.assertTrue(env.log_lines(rf"{mid} mailsuspend: expired recipient=dave@example.com"))
        self.assertTrue(env.log_lines(rf"{mid} \*\* dave@example.com R=mailsuspend_receive: {re.escape(HELD_TEXT)}"))
        self.assertEqual(subjects(env, "dave@example.com"), [])
        bounces = [m for m in env.mailbox("sender@example.com") if "expiring" in m]
        self.assertEqual(len(bounces), 1)
        self.assertIn("Mail delivery failed", bounces[0])
        self.assertIn(HELD_TEXT, bounces[0])


if __name__ == "__main__":
    eximtest.main()
