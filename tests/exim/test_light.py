#!/usr/bin/env python3
"""exim4-daemon-light: no ${dlfunc}, so only local_scan() runs (after DATA).
Runs Debian's real light binary, unpacked next to the build by
fetch-exim-light.sh (it conflicts with the installed heavy package), with
only the light snippet: what light users get, and its documented limits."""
import os
import re
import subprocess

import eximtest
import policytest as pt
from eximtest import EximTestCase, reply_text

HERE = os.path.dirname(os.path.abspath(__file__))
SEND_TEXT = "Permanent Failure: Your account has been suspended for a violation of the terms of usage."
REJECT_TEXT = "Mailbox unavailable: the account is suspended."


def light_binary():
    target = os.path.join(os.path.dirname(eximtest.PATHS["so"]), "exim4-daemon-light")
    proc = subprocess.run([os.path.join(HERE, "fetch-exim-light.sh"), target],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        eximtest.fail_setup("cannot unpack exim4-daemon-light with apt-get download:\n" + proc.stderr)
    path = proc.stdout.strip()
    version = subprocess.run([path, "-bV"], capture_output=True, text=True).stdout
    if "Expand_dlfunc" in version:
        eximtest.fail_setup(f"{path} has ${{dlfunc}}: not the light daemon")
    return path


def subjects(env, address):
    return re.findall(r"^Subject: (.*)$", "\n".join(env.mailbox(address)), re.M)


class LightDaemonTest(EximTestCase):
    @classmethod
    def setUpClass(cls):
        cls.env_options = {"light": True, "exim": light_binary(), "default_mode": "queue",
                           "ms_extra": pt.POLICY_CONF}
        super().setUpClass()
        pt.write_notice_mta(cls.env)

    def test_rate_limit_and_token_after_data(self):
        # No MAIL ACL: local_scan counts, refuses, suspends and adds the token.
        env = self.env
        user = "frank@example.com"
        for n in range(pt.MESSAGES_PER_DAY):
            out = env.send(user, ["zed@example.com"], user=user, subject=f"light-rate-{n}",
                           headers="X-Mailsuspend-Token: forged\r\n", source="127.0.0.21")
            self.assertEqual(out.data[0], 250, out)
        out = env.send(user, ["zed@example.com"], user=user, subject="light-rate-x", source="127.0.0.21")
        self.assertEqual(out.mail[0], 250, out)
        self.assertEqual(out.data[0], 550, out)
        self.assertEqual(reply_text(out.data), "5.7.13 " + pt.RATE_TEXT)
        send = pt.send_state(env, user)
        self.assertEqual((send["suspended"], send["source"]), (True, "rate"), send)
        out = env.send(user, ["zed@example.com"], user=user, subject="light-rate-y", source="127.0.0.21")
        self.assertEqual(reply_text(out.data), "5.7.13 " + pt.RATE_TEXT)
        env.wait_idle()
        delivered = [m for m in env.mailbox("zed@example.com") if "Subject: light-rate-" in m]
        self.assertEqual(len(delivered), pt.MESSAGES_PER_DAY)
        for m in delivered:
            self.assertNotIn("forged", m)
            self.assertEqual(len(re.findall(r"^X-Mailsuspend-Token: [A-Za-z0-9_-]+$", m, re.M)), 1, m)
        # Exim left the notice pending; the sweep (the timer's command) sends it.
        self.assertTrue(pt.notice_pending(env, user))
        self.assertEqual(pt.sent_notices_for(env, user), [])
        env.cli("sweep")
        evidence = pt.evidence_of(pt.sent_notices_for(env, user)[0])
        self.assertIn("Subject: light-rate-x", evidence)

    def test_send_refused_after_data(self):
        env = self.env
        env.cli("suspend", "alice@example.com", "--service", "send")
        out = env.send("alice@example.com", ["zed@example.com"], user="alice@example.com",
                       subject="light-send")
        self.assertEqual(out.mail[0], 250)  # no ACL snippet: nothing at MAIL time
        self.assertEqual(out.data[0], 550, out)
        self.assertTrue(reply_text(out.data).startswith("5.7.13 "), out.data)
        self.assertIn(SEND_TEXT, reply_text(out.data))
        self.assertTrue(env.log_lines(r"send refused sender=alice@example.com .*at=data"))
        self.assertNotIn("light-send", subjects(env, "zed@example.com"))

    def test_all_recipients_reject_mode_refused_after_data(self):
        env = self.env
        env.cli("suspend", "bob@example.com", "--service", "receive", "--mode", "reject")
        out = env.send("outside@remote.test", ["bob@example.com"])
        self.assertEqual(out.rcpts["bob@example.com"][0], 250)  # no RCPT ACL
        self.assertEqual(out.data[0], 550, out)
        self.assertEqual(reply_text(out.data), "5.2.1 " + REJECT_TEXT)

    def test_reject_among_others_is_dropped_and_logged(self):
        env = self.env
        env.cli("suspend", "carol@example.com", "--service", "receive", "--mode", "reject")
        out = env.send("outside@remote.test", ["carol@example.com", "zed@example.com"],
                       subject="light-reject-mixed")
        self.assertEqual(out.data[0], 250)
        env.wait_done(out.message_id)
        self.assertEqual(subjects(env, "carol@example.com"), [])
        self.assertIn("light-reject-mixed", subjects(env, "zed@example.com"))
        self.assertTrue(env.log_lines(
            r"mailsuspend: reject recipient=carol@example.com .*at=data \(dropped: sender not told\)"))

    def test_discard(self):
        env = self.env
        env.cli("suspend", "dave@example.com", "--service", "receive", "--mode", "discard")
        out = env.send("outside@remote.test", ["dave@example.com", "zed@example.com"],
                       subject="light-discard")
        env.wait_done(out.message_id)
        self.assertEqual(subjects(env, "dave@example.com"), [])
        self.assertIn("light-discard", subjects(env, "zed@example.com"))
        self.assertTrue(env.log_lines(
            rf"discard recipient=dave@example.com id={re.escape(out.message_id)} .*at=data"))

    def test_queue_freezes_until_unsuspend(self):
        env = self.env
        env.cli("suspend", "erin@example.com", "--service", "receive")
        out = env.send("outside@remote.test", ["erin@example.com"], subject="light-queue")
        self.assertEqual(out.data[0], 250)
        self.assertRegex(env.queue(), rf"{re.escape(out.message_id)} .*\*\*\* frozen \*\*\*")
        self.assertEqual(subjects(env, "erin@example.com"), [])
        env.cli("unsuspend", "erin@example.com", "--service", "receive")  # -Rff thaws
        self.assertEqual(subjects(env, "erin@example.com"), ["light-queue"])
        self.assertEqual(env.queue_count(), 0)

    def test_hold_freezes_until_release(self):
        # No routers to defer held mail: local_scan freezes it, release thaws and delivers it.
        env = self.env
        env.cli("suspend", "frank@example.com", "--service", "send", "--hold")
        out = env.send("frank@example.com", ["zed@example.com"], user="frank@example.com", subject="light-held")
        self.assertEqual(out.data[0], 250, out)
        self.assertRegex(env.queue(), rf"{re.escape(out.message_id)} .*\*\*\* frozen \*\*\*")
        self.assertTrue(env.log_lines(rf"send held sender=frank@example.com .*id={re.escape(out.message_id)}"))
        self.assertNotIn("light-held", subjects(env, "zed@example.com"))
        self.assertIn(out.message_id, env.cli("held", "frank@example.com").stdout)
        env.cli("release", "frank@example.com")
        self.assertIn("light-held", subjects(env, "zed@example.com"))
        self.assertNotIn(out.message_id, env.queue())


if __name__ == "__main__":
    eximtest.main()
