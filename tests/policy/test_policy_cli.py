#!/usr/bin/env python3
"""CLI tests of the automatic suspension policies (issue 5), run against
the built `mailsuspend` binary with a temporary config and store and a fake
sendmail_command that files every message it is handed.

Usage: test_policy_cli.py /path/to/mailsuspend
"""
import email
import email.policy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

CLI = None

FAKE_SENDMAIL = """#!/bin/sh
n=$(ls "{mail}" | wc -l)
cat > "{mail}/msg-$n.eml"
echo "$@" > "{dir}/sendmail-args"
"""


class PolicyCli(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ms-policy-cli-")
        self.mail = os.path.join(self.dir, "mail")
        os.mkdir(self.mail)
        sendmail = os.path.join(self.dir, "sendmail")
        with open(sendmail, "w") as f:
            f.write(FAKE_SENDMAIL.format(mail=self.mail, dir=self.dir))
        os.chmod(sendmail, 0o755)
        self.config = os.path.join(self.dir, "mailsuspend.conf")
        with open(self.config, "w") as f:
            f.write(f"""
store: {{ path = "{self.dir}/store"; capacity = 64; counter_capacity = 64;
         read_group = ""; write_group = ""; audit_log = "{self.dir}/audit.log"; }};
delivery: {{ flush_command = ""; fail_queued_command = ""; }};
spam: {{ threshold = 2; window = "24h"; evidence_samples = 3;
        default_abuse_contact = "abuse@provider.test";
        abuse_contacts = ( {{ domain = "example.com"; contact = "abuse@example.com"; }} );
        sendmail_command = "{sendmail} -t -oi"; }};
unblock: {{ self_service_interval = "90d"; }};
""")
        self.assertEqual(self.run_cli("init").returncode, 0)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------
    def run_cli(self, *args, stdin=b""):
        return subprocess.run([CLI, "--config", self.config, *args], input=stdin,
                              capture_output=True, timeout=60)

    def ok(self, *args, stdin=b""):
        p = self.run_cli(*args, stdin=stdin)
        self.assertEqual(p.returncode, 0, f"{args}: {p.stdout!r} {p.stderr!r}")
        return p.stdout.decode()

    def send_state(self, address):
        status = json.loads(self.ok("status", address, "--json"))
        return status["services"]["send"], status["services"]

    def mails(self):
        names = sorted(os.listdir(self.mail), key=lambda n: int(n.split("-")[1].split(".")[0]))
        out = []
        for n in names:
            with open(os.path.join(self.mail, n), "rb") as f:
                out.append(email.message_from_bytes(f.read(), policy=email.policy.default))
        return out

    def audit(self):
        path = os.path.join(self.dir, "audit.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f]

    def evidence_file(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def arf(self, original, feedback_type="abuse", original_mail_from="bounce@forged.test"):
        return (
            "From: fbl@isp.test\r\nTo: fbl@provider.test\r\nSubject: Abuse report\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=feedback-report; boundary="arf-b"\r\n\r\n'
            "--arf-b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            "This is an email abuse report.\r\n"
            "--arf-b\r\nContent-Type: message/feedback-report\r\n\r\n"
            f"Feedback-Type: {feedback_type}\r\nUser-Agent: TestFBL/1.0\r\nVersion: 1\r\n"
            f"Original-Mail-From: <{original_mail_from}>\r\nSource-IP: 192.0.2.55\r\n"
            "\r\n--arf-b\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
            + original + "\r\n--arf-b--\r\n").encode()

    @staticmethod
    def original(token=None, sender="ceo@bank.test", subject="You won"):
        headers = ["Return-Path: <forged-envelope@example.com>",
                   "Received: from client by mx.provider.test",
                   f"From: {sender}", "To: victim@isp.test", f"Subject: {subject}"]
        if token:
            headers.insert(2, f"X-Mailsuspend-Token: {token}")
        return "\r\n".join(headers) + "\r\n\r\nClaim your prize now.\r\n"

    def evidence_of(self, msg):
        attachments = [p for p in msg.iter_attachments()]
        self.assertEqual([a.get_filename() for a in attachments], ["evidence.txt"])
        return attachments[0].get_content()

    # -- spam reports ----------------------------------------------------
    def test_reports_over_threshold_soft_suspend_send_and_notify_abuse_contact(self):
        for i in range(1, 4):
            out = self.ok("report-spam", "a@example.com", "--evidence",
                          self.evidence_file(f"s{i}.eml", f"From: a@example.com\nSubject: spam number {i}\n\nbuy\n"))
            send, services = self.send_state("a@example.com")
            if i <= 2:
                self.assertFalse(send["suspended"], f"report {i} must not suspend (threshold 2): {out}")
                self.assertEqual(self.mails(), [])
        self.assertTrue(send["suspended"])
        self.assertEqual(send["source"], "spam")
        self.assertIsNone(send["expires"], "a soft-suspension lasts until lifted")
        self.assertFalse(send["locked"])
        for other in ("imap", "pop3", "webmail", "receive"):
            self.assertFalse(services[other]["suspended"], f"{other}: the user still logs in and receives")
        mails = self.mails()
        self.assertEqual(len(mails), 1)
        m = mails[0]
        self.assertEqual(m["To"], "abuse@example.com")
        self.assertEqual(m.get_content_type(), "multipart/mixed")
        self.assertIn("a@example.com", m["Subject"])
        self.assertEqual(m["Auto-Submitted"], "auto-generated")
        body = m.get_body(preferencelist=("plain",)).get_content()
        self.assertIn("spam reports about 3 distinct message(s) within 1d", body)
        evidence = self.evidence_of(m)
        for i in range(1, 4):
            self.assertIn(f"Subject: spam number {i}", evidence)
        self.assertIn("Sample 3 of 3", evidence)
        with open(os.path.join(self.dir, "sendmail-args")) as f:
            self.assertEqual(f.read().split(), ["-t", "-oi"])
        actions = [(a["action"], a["target"]) for a in self.audit()]
        self.assertEqual(actions.count(("spam-report", "a@example.com")), 3)
        self.assertIn(("suspend", "a@example.com"), actions)

    def test_spam_reports_take_over_a_suspension_that_would_expire(self):
        # send is already suspended for an hour (as a rate suspension is):
        # the spam soft-suspension must not be lost when that hour ends.
        self.ok("suspend", "a@example.com", "--service", "send", "--for", "1h", "--reason", "hour")
        for i in range(1, 4):
            self.ok("report-spam", "a@example.com")
        send, _ = self.send_state("a@example.com")
        self.assertTrue(send["suspended"])
        self.assertEqual(send["source"], "spam")
        self.assertIsNone(send["expires"], "the spam suspension replaces the one that would expire")
        self.assertEqual(len(self.mails()), 1, "the AUP notice goes out")
        # A permanent suspension is left as it is.
        self.ok("suspend", "b@example.com", "--service", "send", "--reason", "admin")
        for i in range(1, 4):
            self.ok("report-spam", "b@example.com")
        send, _ = self.send_state("b@example.com")
        self.assertEqual(send["source"], "admin")
        self.assertEqual(send["reason"], "admin")

    def test_evidence_samples_are_bounded_by_spam_evidence_samples(self):
        for i in range(1, 4):
            files = []
            for j in range(2):
                files += ["--evidence", self.evidence_file(f"s{i}{j}.eml", f"Subject: sample {i}{j}\n\nx\n")]
            self.ok("report-spam", "a@example.com", *files)
        evidence = self.evidence_of(self.mails()[0])
        self.assertEqual(evidence.count("===== Sample"), 3)

    def test_domain_without_contact_uses_default_abuse_contact(self):
        for _ in range(3):
            self.ok("report-spam", "x@other.test")
        self.assertEqual(self.mails()[0]["To"], "abuse@provider.test")

    def test_report_spam_bad_input_exits_2(self):
        for args, expect in [((), "give ADDRESS"),
                             (("a@example.com", "--arf"), "not both"),
                             (("@example.com",), "not a domain"),
                             (("not an address",), "invalid target"),
                             (("a@example.com", "--evidence", "/nonexistent/file"), "cannot read"),
                             (("a@example.com", "--token-only"), "--token-only goes with --arf")]:
            p = self.run_cli("report-spam", *args)
            self.assertEqual(p.returncode, 2, f"{args}: {p.stdout!r} {p.stderr!r}")
            self.assertIn(expect, p.stderr.decode())
        self.assertEqual([a for a in self.audit() if a["action"] == "spam-report"], [])

    # -- ARF -------------------------------------------------------------
    def test_arf_with_forged_from_is_attributed_to_the_token_account(self):
        for i in range(3):  # three messages, three tokens (one report per message counts)
            token = self.ok("token", "real@example.com").strip()
            report = self.arf(self.original(token=token, sender="forged@example.com"),
                              original_mail_from="forged@example.com")
            out = self.ok("report-spam", "--arf", stdin=report)
            self.assertIn("attributed to real@example.com by token", out)
        send, _ = self.send_state("real@example.com")
        self.assertTrue(send["suspended"])
        self.assertEqual(send["source"], "spam")
        forged, _ = self.send_state("forged@example.com")
        self.assertFalse(forged["suspended"])
        targets = {a["target"] for a in self.audit() if a["action"] == "spam-report"}
        self.assertEqual(targets, {"real@example.com"})
        evidence = self.evidence_of(self.mails()[0])
        self.assertIn("Subject: You won", evidence, "the reported message is the evidence")

    def test_arf_with_tampered_token_exits_2_and_records_nothing(self):
        token = self.ok("token", "real@example.com").strip()
        mid = len(token) // 2
        tampered = token[:mid] + ("A" if token[mid] != "A" else "B") + token[mid + 1:]
        p = self.run_cli("report-spam", "--arf", stdin=self.arf(self.original(token=tampered)))
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("forged or altered", p.stderr.decode())
        self.assertEqual(self.audit(), [])

    def test_arf_token_from_another_store_key_is_refused(self):
        other = PolicyCli("test_arf_token_from_another_store_key_is_refused")
        other.setUp()
        try:
            foreign = other.ok("token", "real@example.com").strip()
        finally:
            other.tearDown()
        p = self.run_cli("report-spam", "--arf", stdin=self.arf(self.original(token=foreign)))
        self.assertEqual(p.returncode, 2, p.stderr)

    def test_arf_without_token_falls_back_to_original_mail_from_unless_token_only(self):
        report = self.arf(self.original(), original_mail_from="someone@example.com")
        p = self.run_cli("report-spam", "--arf", "--token-only", stdin=report)
        self.assertEqual(p.returncode, 2)
        self.assertIn("no X-Mailsuspend-Token", p.stderr.decode())
        out = self.ok("report-spam", "--arf", stdin=report)
        self.assertIn("attributed to someone@example.com by Original-Mail-From", out)
        self.assertIn("forgeable", out)

    def test_arf_parse_errors_exit_2_with_a_clear_message(self):
        cases = [
            (b"", "empty input"),
            (b"Subject: hello\r\n\r\nnot a report\r\n", "no Content-Type header"),
            (b"Content-Type: text/plain\r\n\r\nhello\r\n", "expected multipart/report"),
            (b"Content-Type: multipart/report; report-type=feedback-report\r\n\r\nx\r\n", "no boundary"),
            (self.arf(self.original()).replace(b"Feedback-Type: abuse\r\n", b""), "no Feedback-Type"),
        ]
        for data, expect in cases:
            p = self.run_cli("report-spam", "--arf", stdin=data)
            self.assertEqual(p.returncode, 2, f"{expect}: {p.stdout!r} {p.stderr!r}")
            err = p.stderr.decode()
            self.assertIn("ARF report: ", err)
            self.assertIn(expect, err)
        self.assertEqual(self.audit(), [])

    def test_arf_feedback_other_than_abuse_is_ignored(self):
        token = self.ok("token", "real@example.com").strip()
        out = self.ok("report-spam", "--arf", stdin=self.arf(self.original(token=token), feedback_type="not-spam"))
        self.assertIn("ignored", out)
        self.assertEqual(self.audit(), [])

    # -- unblock limits, locks, deletion, sweep ---------------------------
    def spam_suspend(self, address, reports=3):
        for _ in range(reports):
            self.ok("report-spam", address)
        self.assertTrue(self.send_state(address)[0]["suspended"])

    def test_self_service_unblock_once_per_interval(self):
        self.spam_suspend("a@example.com")
        self.ok("unsuspend", "a@example.com", "--self-service")
        self.assertFalse(self.send_state("a@example.com")[0]["suspended"])
        self.spam_suspend("a@example.com", reports=1)  # still 3+ reports within the window
        p = self.run_cli("unsuspend", "a@example.com", "--self-service")
        self.assertEqual(p.returncode, 3, p.stderr)
        err = p.stderr.decode()
        self.assertIn("next possible on", err)
        self.assertTrue(self.send_state("a@example.com")[0]["suspended"])
        # An admin unsuspend is always allowed and recorded.
        self.ok("unsuspend", "a@example.com", "--service", "send")
        self.assertFalse(self.send_state("a@example.com")[0]["suspended"])
        self.assertEqual(self.audit()[-1]["action"], "unsuspend")

    def test_self_service_cannot_lift_an_admin_suspension(self):
        self.ok("suspend", "a@example.com", "--service", "send", "--reason", "AUP")
        p = self.run_cli("unsuspend", "a@example.com", "--self-service")
        self.assertEqual(p.returncode, 3)

    def test_lock_needs_admin(self):
        self.ok("suspend", "a@example.com", "--service", "send", "--lock")
        p = self.run_cli("unsuspend", "a@example.com")
        self.assertEqual(p.returncode, 3)
        self.assertIn("locked", p.stderr.decode())
        self.assertEqual(self.run_cli("unsuspend", "a@example.com", "--self-service").returncode, 3)
        self.ok("unsuspend", "a@example.com", "--admin")
        self.assertFalse(self.send_state("a@example.com")[0]["suspended"])

    def test_can_delete_exit_codes(self):
        self.ok("can-delete", "a@example.com")
        self.spam_suspend("a@example.com")
        p = self.run_cli("can-delete", "a@example.com")
        self.assertEqual(p.returncode, 3)
        self.assertIn("send", p.stderr.decode())
        self.ok("unsuspend", "a@example.com")
        self.ok("can-delete", "a@example.com")
        self.ok("suspend", "@example.com", "--service", "imap")
        self.assertEqual(self.run_cli("can-delete", "b@example.com").returncode, 3, "domain suspension counts")

    def test_sweep_lifts_expired_and_audits_them(self):
        # Times are whole seconds: --for 3s stays in force for at least 2 s,
        # room for the check below on a loaded machine.
        self.ok("suspend", "a@example.com", "--service", "send", "--for", "3s")
        self.assertTrue(self.send_state("a@example.com")[0]["suspended"])
        deadline = time.monotonic() + 10
        while self.send_state("a@example.com")[0]["suspended"] and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(self.send_state("a@example.com")[0]["suspended"], "expired suspensions are not in force")
        out = self.ok("sweep")
        self.assertIn("lifted 1", out)
        self.assertEqual(self.audit()[-1]["action"], "expire")
        self.assertEqual(self.ok("list"), "")


if __name__ == "__main__":
    CLI = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
