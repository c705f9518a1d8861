#!/usr/bin/env python3
"""Sending while "send" (or "webmail_send") is suspended: SMTP AUTH, webmail
host, local submissions, domain-level suspension, and --fail-queued."""
import eximtest
from eximtest import EximTestCase, reply_text

SEND_TEXT = "Permanent Failure: Your account has been suspended for a violation of the terms of usage."


class SendTest(EximTestCase):
    def assertRefusedAtMail(self, out, reason=None):
        self.assertEqual(out.mail[0], 550, out)
        text = reply_text(out.mail)
        self.assertTrue(text.startswith("5.7.13 "), out.mail)
        self.assertIn(SEND_TEXT, text)
        if reason:
            self.assertIn(f"({reason})", text)
        self.assertIsNone(out.data)

    def assertDelivered(self, out, rcpt, subject):
        self.assertEqual(out.data[0], 250, out)
        self.env.wait_done(out.message_id)
        self.assertTrue(any(f"Subject: {subject}" in m for m in self.env.mailbox(rcpt)),
                        f"{subject!r} not in {rcpt}'s mailbox")

    def test_auth_sender_refused_at_mail(self):
        self.env.cli("suspend", "alice@example.com", "--service", "send", "--reason", "spam run")
        out = self.env.send("alice@example.com", ["zed@example.com"], user="alice@example.com",
                            subject="auth-refused")
        self.assertRefusedAtMail(out, "spam run")
        # Identified by the AUTH id, whatever MAIL FROM says.
        out = self.env.send("someone-else@example.com", ["zed@example.com"],
                            user="alice@example.com", subject="auth-refused-2")
        self.assertRefusedAtMail(out)
        self.assertTrue(self.env.wait_log(
            r"mailsuspend: send refused sender=alice@example.com service=send scope=mailbox "
            r"client=127\.0\.0\.1 at=mail"))
        self.assertFalse(any("auth-refused" in m for m in self.env.mailbox("zed@example.com")))

    def test_auth_unsuspended_and_inbound_mail_flow(self):
        self.env.cli("suspend", "bob@example.com", "--service", "send")
        out = self.env.send("bob@example.com", ["zed@example.com"], user="bob@example.com",
                            subject="bob-while-suspended")
        self.assertRefusedAtMail(out)
        # bob's mailbox may still send after unsuspend; others always could.
        out = self.env.send("carol@example.com", ["zed@example.com"], user="carol@example.com",
                            subject="carol-sends")
        self.assertDelivered(out, "zed@example.com", "carol-sends")
        # Inbound from an ordinary (non-webmail) host claiming bob: not a submission.
        out = self.env.send("bob@example.com", ["zed@example.com"], subject="inbound-bob")
        self.assertDelivered(out, "zed@example.com", "inbound-bob")
        self.env.cli("unsuspend", "bob@example.com", "--service", "send")
        out = self.env.send("bob@example.com", ["zed@example.com"], user="bob@example.com",
                            subject="bob-lifted")
        self.assertDelivered(out, "zed@example.com", "bob-lifted")

    def test_webmail_host_checked_by_envelope_sender(self):
        self.env.cli("suspend", "dave@example.com", "--service", "send")
        out = self.env.send("dave@example.com", ["zed@example.com"], source="127.0.0.2",
                            subject="webmail-dave")
        self.assertRefusedAtMail(out)
        self.assertTrue(self.env.wait_log(
            r"mailsuspend: send refused sender=dave@example.com service=send .*client=127\.0\.0\.2"))

    def test_webmail_send_only(self):
        self.env.cli("suspend", "erin@example.com", "--service", "webmail_send")
        # From the webmail host: refused, with or without AUTH.
        out = self.env.send("erin@example.com", ["zed@example.com"], source="127.0.0.2")
        self.assertRefusedAtMail(out)
        out = self.env.send("erin@example.com", ["zed@example.com"], source="127.0.0.2",
                            user="erin@example.com")
        self.assertRefusedAtMail(out)
        self.assertTrue(self.env.wait_log(r"send refused sender=erin@example.com service=webmail_send"))
        # A mail client elsewhere still sends.
        out = self.env.send("erin@example.com", ["zed@example.com"], user="erin@example.com",
                            subject="erin-client")
        self.assertDelivered(out, "zed@example.com", "erin-client")

    def test_local_smtp_by_envelope_sender(self):
        self.env.cli("suspend", "frank@example.com", "--service", "send", "--reason", "bs-test")
        out = self.env.local_smtp("frank@example.com", ["zed@example.com"], subject="bs-frank")
        self.assertRefusedAtMail(out, "bs-test")
        self.assertTrue(self.env.wait_log(r"send refused sender=frank@example.com .*client=local at=mail"))

    def test_local_sendmail_refused_after_data(self):
        self.env.cli("suspend", "grace@example.com", "--service", "send")
        proc = self.env.sendmail("grace@example.com", ["zed@example.com"], subject="sendmail-grace")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(SEND_TEXT, proc.stdout + proc.stderr)
        self.assertTrue(self.env.wait_log(
            r"mailsuspend: send refused sender=grace@example.com .*client=local at=data"))
        self.assertTrue(self.env.wait_log(r"rejected by local_scan\(\): 5\.7\.13 "))
        self.assertFalse(any("sendmail-grace" in m for m in self.env.mailbox("zed@example.com")))
        # An unsuspended local sender is untouched.
        proc = self.env.sendmail("heidi@example.com", ["zed@example.com"], subject="sendmail-heidi")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertTrue(any("sendmail-heidi" in m for m in self.env.mailbox("zed@example.com")))

    def test_sendmail_from_an_ordinary_user(self):
        """PHP's mail() runs /usr/sbin/sendmail as the site's own user: Exim (setuid
        root) drops to Debian-exim with no supplementary group to read the message,
        so the module reaches the store only through the directory's ACL for
        write_group.  Without it the store is unreadable and fail policy "open"
        lets the suspended account send."""
        self.env.cli("suspend", "nobody@example.com", "--service", "send")
        proc = self.env.sendmail_as("nobody", ["zed@example.com"], subject="php-nobody")
        self.assertNotEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn(SEND_TEXT, proc.stdout + proc.stderr)
        self.assertTrue(self.env.wait_log(
            r"mailsuspend: send refused sender=nobody@example.com .*client=local at=data"))
        self.assertFalse(any("php-nobody" in m for m in self.env.mailbox("zed@example.com")))
        self.env.cli("unsuspend", "nobody@example.com")
        proc = self.env.sendmail_as("nobody", ["zed@example.com"], subject="php-nobody-2")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertTrue(any("php-nobody-2" in m for m in self.env.mailbox("zed@example.com")))

    def test_domain_level_suspension(self):
        self.env.cli("suspend", "@example.org", "--service", "send", "--reason", "domain abuse")
        out = self.env.send("ivan@example.org", ["zed@example.com"], user="ivan@example.org")
        self.assertRefusedAtMail(out, "domain abuse")
        self.assertTrue(self.env.wait_log(r"send refused sender=ivan@example.org service=send scope=domain"))
        # Sub-addresses and case are the same mailbox.
        out = self.env.send("Judy+news@Example.ORG", ["zed@example.com"], source="127.0.0.2")
        self.assertRefusedAtMail(out)
        out = self.env.send("judy@example.com", ["zed@example.com"], user="judy@example.com",
                            subject="other-domain")
        self.assertDelivered(out, "zed@example.com", "other-domain")

    def test_fail_queued_bounces_to_sender(self):
        # Two messages from sender@ to a remote host that refuses connections:
        # they wait in the queue.
        ids = []
        for n in range(2):
            out = self.env.send("sender@example.com", [f"friend{n}@remote.test"],
                                user="sender@example.com", subject=f"queued-{n}")
            self.assertEqual(out.data[0], 250, out)
            self.env.wait_done(out.message_id)
            ids.append(out.message_id)
        queue = self.env.queue()
        for i in ids:
            self.assertIn(i, queue)
        self.env.cli("suspend", "sender@example.com", "--service", "send", "--fail-queued",
                     "--reason", "compromised")
        queue = self.env.queue()
        for i in ids:
            self.assertNotIn(i, queue, "fail-queued left the message in the queue")
            self.assertTrue(self.env.log_lines(
                rf"{i} mailsuspend: queued message failed sender=sender@example.com"))
            self.assertTrue(self.env.log_lines(rf"{i} \*\* friend\d@remote.test R=mailsuspend_fail_queued"))
        bounces = self.env.mailbox("sender@example.com")
        self.assertEqual(len(bounces), 2, bounces)
        for b in bounces:
            self.assertIn("Mail delivery failed", b)
            self.assertIn(SEND_TEXT, b)
            self.assertIn("compromised", b)

    def test_send_suspension_without_fail_queued_leaves_queue(self):
        out = self.env.send("postmaster@example.com", ["friend@remote.test"],
                            user="postmaster@example.com", subject="stays")
        self.assertEqual(out.data[0], 250, out)
        self.env.wait_done(out.message_id)
        self.env.cli("suspend", "postmaster@example.com", "--service", "send")
        self.env.exim("-Sff", "postmaster@example.com")  # a forced run: still just deferred
        self.assertIn(out.message_id, self.env.queue())
        self.assertFalse(self.env.log_lines(rf"{out.message_id} .*mailsuspend_fail_queued"))


if __name__ == "__main__":
    eximtest.main()
