#!/usr/bin/env python3
"""Sender tokens and spam reports against the real Exim (issue 5, seeds 000,
001): submissions leave with our X-Mailsuspend-Token (a client's own is
replaced, inbound mail carries none), and an ARF report built around a
delivered message with a forged From and envelope is attributed to the
account that really sent it; over spam.threshold that account's send is
soft-suspended (source spam) while it still receives, and the abuse contact
gets the notice with evidence.txt.  Limits: policytest.POLICY_CONF."""
import base64
import email
import email.policy
import subprocess

import eximtest
import policytest as pt
from eximtest import EximTestCase

HEADER = "X-Mailsuspend-Token"


def token_headers(raw):
    """The values of every X-Mailsuspend-Token header of a delivered message."""
    msg = email.message_from_string(raw, policy=email.policy.compat32)
    return [v.strip() for v in msg.get_all(HEADER) or []]


def arf_report(reported, original_mail_from, feedback_type="abuse"):
    """An RFC 5965 feedback report about the message reported (its text), as
    a mailbox provider's feedback loop sends it."""
    return (
        "From: fbl@mailbox-provider.test\r\n"
        "To: abuse@example.com\r\n"
        "Subject: FW: spam report\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="arf-b"\r\n'
        "\r\n"
        "--arf-b\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "A user of ours marked this message as spam.\r\n"
        "--arf-b\r\n"
        "Content-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\n"
        "User-Agent: test-fbl/1.0\r\n"
        "Version: 1\r\n"
        f"Original-Mail-From: <{original_mail_from}>\r\n"
        "Original-Rcpt-To: <victim@mailbox-provider.test>\r\n"
        "\r\n"
        "--arf-b\r\n"
        "Content-Type: message/rfc822\r\n\r\n"
        + reported.replace("\r\n", "\n").replace("\n", "\r\n") +
        "\r\n--arf-b--\r\n")


class SpamReportTest(EximTestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = pt.make_env(cls.__name__)
        try:
            cls.env.start_daemon()
        except BaseException:
            cls.env.stop()
            raise

    def deliver(self, subject, sender, **kw):
        """Sends one message to zed@example.com; returns it as delivered."""
        out = self.env.send(sender, ["zed@example.com"], subject=subject, **kw)
        self.assertEqual(out.data[0], 250, out)
        self.env.wait_done(out.message_id)
        mine = [m for m in self.env.mailbox("zed@example.com") if f"Subject: {subject}\n" in m]
        self.assertEqual(len(mine), 1, f"{subject!r} delivered {len(mine)} times")
        return mine[0]

    def account_of(self, token):
        """The account a token names (`mailsuspend token --open`)."""
        return self.env.cli("token", "--open", token).stdout.split(" (issued")[0].strip()

    def report(self, arf, check_code=0, options=()):
        """`mailsuspend report-spam --arf` with arf on stdin; returns its output."""
        proc = subprocess.run(
            [eximtest.PATHS["cli"], "--config", self.env.ms_conf, "report-spam", "--arf", *options],
            input=arf, capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, check_code, proc.stdout + proc.stderr)
        return proc.stdout + proc.stderr

    # ---- the token --------------------------------------------------------------
    def test_submission_carries_our_token_client_one_replaced(self):
        forged = "X-Mailsuspend-Token: AAAAforgedforgedforged\r\nx-mailsuspend-token : another\r\n"
        raw = self.deliver("token-alice", "alice@example.com", user="alice@example.com",
                           headers=forged)
        tokens = token_headers(raw)
        self.assertEqual(len(tokens), 1, raw)
        self.assertNotIn("forged", raw)
        self.assertNotIn("another", raw)
        self.assertRegex(tokens[0], r"^[A-Za-z0-9_-]{40,}$")
        self.assertEqual(self.account_of(tokens[0]), "alice@example.com")
        self.assertTrue(self.env.wait_log(r"mailsuspend: dropped 2 client-supplied X-Mailsuspend-Token"))

    def test_inbound_mail_carries_no_token(self):
        raw = self.deliver("token-inbound", "someone@remote.test",
                           headers="X-Mailsuspend-Token: copied-from-elsewhere\r\n")
        self.assertEqual(token_headers(raw), [], raw)

    def test_local_and_webmail_submissions_carry_tokens(self):
        proc = self.env.sendmail("heidi@example.com", ["zed@example.com"], subject="token-local",
                                 headers="X-Mailsuspend-Token: forged\n")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        raw = [m for m in self.env.mailbox("zed@example.com") if "Subject: token-local\n" in m][0]
        self.assertEqual([self.account_of(t) for t in token_headers(raw)], ["heidi@example.com"])
        raw = self.deliver("token-webmail", "ivan@example.org", source="127.0.0.2")
        self.assertEqual([self.account_of(t) for t in token_headers(raw)], ["ivan@example.org"])

    def test_tokens_differ_between_connections(self):
        # Each connection is a process the daemon forked after loading the
        # key: the random nonce must still differ in every one.
        tokens = [token_headers(self.deliver(f"token-fork-{n}", "judy@example.com",
                                             user="judy@example.com"))[0] for n in range(4)]
        self.assertEqual(len(set(tokens)), 4, tokens)

    # ---- ARF reports ------------------------------------------------------------
    def test_arf_reports_attributed_by_token_despite_forged_from(self):
        # carol authenticates but forges both the From header and the
        # envelope sender as bob.
        # One report per message (issue 12, item 6): threshold + 1 distinct messages.
        arfs = []
        for n in range(pt.SPAM_THRESHOLD + 1):
            raw = self.deliver(f"spam-carol-{n}", "bob@example.com", user="carol@example.com",
                               from_header="Bob <bob@example.com>",
                               body="Cheap watches! Buy now at http://spam.test/")
            self.assertIn("From: Bob <bob@example.com>", raw)
            self.assertIn("Return-path: <bob@example.com>", raw)
            arfs.append(arf_report(raw, "bob@example.com"))

        for n in range(pt.SPAM_THRESHOLD):
            out = self.report(arfs[n])
            self.assertIn("carol@example.com", out)
            self.assertFalse(pt.send_state(self.env, "carol@example.com")["suspended"], n)
        # Over the threshold: carol's send is suspended softly.
        out = self.report(arfs[-1])
        self.assertIn(f"about {pt.SPAM_THRESHOLD + 1} distinct message(s)", out)
        state = pt.status(self.env, "carol@example.com")["services"]
        self.assertTrue(state["send"]["suspended"])
        self.assertEqual(state["send"]["source"], "spam")
        self.assertFalse(state["send"]["locked"])
        for service in ("imap", "pop3", "webmail", "receive"):
            self.assertFalse(state[service]["suspended"], service)
        # bob, whose address the spammer used, is untouched.
        for service, s in pt.status(self.env, "bob@example.com")["services"].items():
            self.assertFalse(s["suspended"], service)

        # carol cannot send, but still receives.
        out = self.env.send("carol@example.com", ["zed@example.com"], user="carol@example.com")
        self.assertEqual(out.mail[0], 550, out)
        self.assertTrue(eximtest.reply_text(out.mail).startswith("5.7.13 "), out.mail)
        out = self.env.send("friend@remote.test", ["carol@example.com"], subject="for-carol")
        self.assertEqual(out.data[0], 250, out)
        self.env.wait_done(out.message_id)
        self.assertTrue(any("Subject: for-carol" in m for m in self.env.mailbox("carol@example.com")))

        # The abuse contact got the notice, with the reported message as evidence.
        notice = pt.notice_for(self.env, "carol@example.com")
        self.assertEqual(len(notice), 1)
        self.assertEqual(notice[0]["To"], "abuse@example.net")
        self.assertIn("spam", notice[0]["Subject"])
        evidence = pt.evidence_of(notice[0])
        self.assertIsNotNone(evidence, notice[0].as_string())
        self.assertIn("Subject: spam-carol-", evidence)
        self.assertIn(f"{pt.SPAM_THRESHOLD + 1} distinct message(s)", notice[0].as_string())
        self.assertIn("Cheap watches!", evidence)

    def test_one_token_replayed_in_many_reports_counts_once(self):
        # Issue 12, item 6: a token copied from one genuine message of grace,
        # replayed in 6 reports, suspended her send.  One message, one report.
        raw = self.deliver("replayed", "grace@example.com", user="grace@example.com")
        token = token_headers(raw)[0]
        first = self.report(arf_report(raw, "grace@example.com"))
        self.assertIn("about 1 distinct message(s)", first)
        for n in range(5):
            # The same token in other reports, also pasted into other "messages".
            other = raw.replace("Subject: replayed", f"Subject: replayed-{n}")
            out = self.report(arf_report(other, "grace@example.com"))
            self.assertIn("already reported", out)
            self.assertIn("not counted again", out)
        self.assertFalse(pt.send_state(self.env, "grace@example.com")["suspended"])
        audit = [a for a in pt.audit(self.env) if a.get("target") == "grace@example.com"
                 and a.get("action") == "spam-report"]
        self.assertEqual(len(audit), 6)
        self.assertEqual(sum(1 for a in audit if a["duplicate"]), 5)
        self.assertTrue(all(a["reports_in_window"] == 1 for a in audit), audit)
        self.assertEqual(self.account_of(token), "grace@example.com")

    def test_tampered_token_is_refused_and_never_falls_back(self):
        raw = self.deliver("spam-dave", "dave@example.com", user="dave@example.com")
        token = token_headers(raw)[0]
        flipped = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
        bad = raw.replace(token, flipped)
        for _ in range(pt.SPAM_THRESHOLD + 1):
            out = self.report(arf_report(bad, "dave@example.com"), check_code=2)
            self.assertIn("token", out.lower())
        self.assertFalse(pt.send_state(self.env, "dave@example.com")["suspended"])

    def test_without_token_envelope_is_used_but_marked_forgeable(self):
        # Mail that never passed our submission path (inbound, no token).
        raw = self.deliver("spam-no-token", "erin@example.com")
        self.assertEqual(token_headers(raw), [])
        out = self.report(arf_report(raw, "erin@example.com"))
        self.assertIn("erin@example.com", out)
        self.assertIn("forgeable", out)
        # A feed that only trusts tokens refuses it.
        self.report(arf_report(raw, "erin@example.com"), check_code=2, options=("--token-only",))


if __name__ == "__main__":
    eximtest.main()
