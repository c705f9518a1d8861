#!/usr/bin/env python3
"""`mailsuspend notify` against a real HTTP receiver on loopback (issue 16,
item 4): every change the CLI makes arrives once, in log order, signed, the
body byte for byte the audit line; nothing is lost while the receiver is
down, across a SIGKILL of the agent (the line in flight may come twice), or
across a rotation of the audit log; the admin is mailed about an automatic
suspension.

test_notify.py --cli MAILSUSPEND
"""
import argparse
import email
import email.policy
import hashlib
import hmac
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fleet"))
from fleetenv import wait_until  # noqa: E402  (the fleet tests' harness: a poll with a deadline)

PORT = 18431  # fixed: the suite runs under the shared integration lock
SECRET = b"notify-test-secret-0123456789"
CLI = None

FAKE_SENDMAIL = """#!/bin/sh
cat > "{mail}/msg-$(date +%s%N).eml"
"""


class Receiver:
    """An HTTP server on 127.0.0.1:PORT that records every POST (body and
    signature header) and answers 200; delay makes each answer slow."""

    def __init__(self, delay=0.0):
        self.received = []
        self.refuse = 0  # answer 500 to this many POSTs first (recorded all the same)
        self.lock = threading.Lock()
        self.delay = delay
        self.server = None

    def start(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.received.append((body, self.headers.get("X-Mailsuspend-Signature"),
                                              self.headers.get("Content-Type"), self.path))
                time.sleep(receiver.delay)
                with receiver.lock:
                    status = 500 if receiver.refuse > 0 else 200
                    receiver.refuse -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        http.server.HTTPServer.allow_reuse_address = True
        self.server = http.server.HTTPServer(("127.0.0.1", PORT), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def bodies(self):
        with self.lock:
            return [r[0] for r in self.received]


class NotifyTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ms-notify-")
        self.log = os.path.join(self.dir, "audit.log")
        self.mail = os.path.join(self.dir, "mail")
        os.mkdir(self.mail)
        sendmail = os.path.join(self.dir, "sendmail")
        with open(sendmail, "w") as f:
            f.write(FAKE_SENDMAIL.format(mail=self.mail))
        os.chmod(sendmail, 0o755)
        secret = os.path.join(self.dir, "webhook.secret")
        with open(secret, "wb") as f:
            f.write(SECRET + b"\n")
        os.chmod(secret, 0o600)
        self.conf = os.path.join(self.dir, "mailsuspend.conf")
        with open(self.conf, "w") as f:
            f.write(f"""
store: {{ path = "{self.dir}/store"; capacity = 256; counter_capacity = 64;
         read_group = ""; write_group = ""; audit_log = "{self.log}"; }};
delivery: {{ flush_command = ""; fail_queued_command = ""; }};
spam: {{ threshold = 1; window = "24h"; sendmail_command = "{sendmail} -t -oi"; }};
alerts: {{ webhook_url = "http://127.0.0.1:{PORT}/hooks/mailsuspend";
          webhook_secret_file = "{secret}"; admin_address = "postmaster@example.com"; }};
""")
        self.cli("init")
        self.receiver = Receiver()
        self.agent = None
        self.agent_log = open(os.path.join(self.dir, "agent.log"), "ab")

    def tearDown(self):
        self.stop_agent()
        self.receiver.stop()
        self.agent_log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------
    def cli(self, *args):
        p = subprocess.run([CLI, "--config", self.conf, *args], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, f"{args}: {p.stdout} {p.stderr}")
        return p.stdout

    def start_agent(self):
        self.agent = subprocess.Popen([CLI, "--config", self.conf, "notify"], stdout=self.agent_log,
                                      stderr=self.agent_log)

    def stop_agent(self, sig=signal.SIGTERM):
        if self.agent and self.agent.poll() is None:
            self.agent.send_signal(sig)
            self.agent.wait(timeout=30)
        self.agent = None

    def changes(self, n, prefix="u"):
        """n changes, each one audit line: suspend, set-mode, unsuspend in turn."""
        for i in range(n):
            target = f"{prefix}{i // 3}@example.com"
            step = i % 3
            if step == 0:
                self.cli("suspend", target, "--service", "imap,send", "--reason", f"change {i}")
            elif step == 1:
                self.cli("set-mode", target, "reject")
            else:
                self.cli("unsuspend", target)

    def audit_lines(self, *files):
        out = []
        for path in files or [self.log]:
            with open(path, "rb") as f:
                out += [line for line in f.read().split(b"\n") if line]
        return out

    def wait_for(self, count):
        wait_until(lambda: len(self.receiver.bodies()) >= count, f"{count} POSTs (got "
                   f"{len(self.receiver.bodies())})")

    def assert_signed(self):
        for body, signature, content_type, path in self.receiver.received:
            expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
            self.assertEqual(signature, expected, body)
            self.assertEqual(content_type, "application/json")
            self.assertEqual(path, "/hooks/mailsuspend")

    # -- tests -----------------------------------------------------------
    def test_every_change_arrives_once_in_order_signed_byte_for_byte(self):
        self.receiver.start()
        self.start_agent()
        self.changes(12)
        lines = self.audit_lines()
        self.assertEqual(len(lines), 12)
        self.wait_for(12)
        time.sleep(0.5)  # nothing more comes
        self.assertEqual(self.receiver.bodies(), lines)
        self.assert_signed()
        for body in self.receiver.bodies():
            json.loads(body)

    def test_receiver_down_then_up_everything_arrives_in_order(self):
        self.start_agent()
        self.changes(6)
        time.sleep(2.5)  # the agent tried and backs off (connection refused)
        with open(os.path.join(self.dir, "agent.log"), "rb") as f:
            self.assertIn(b"retrying", f.read())
        self.receiver.start()
        self.changes(3, prefix="v")
        lines = self.audit_lines()
        self.wait_for(len(lines))
        time.sleep(0.5)
        self.assertEqual(self.receiver.bodies(), lines)
        self.assert_signed()

    def test_only_a_2xx_answer_advances(self):
        self.receiver.refuse = 2
        self.receiver.start()
        self.start_agent()
        self.changes(3)
        lines = self.audit_lines()
        self.wait_for(len(lines) + 2)
        time.sleep(0.5)
        # The first line three times (500, 500, 200), then the others once each, in order.
        self.assertEqual(self.receiver.bodies(), [lines[0]] * 3 + lines[1:])
        self.assert_signed()

    def test_sigkill_mid_stream_loses_nothing(self):
        self.receiver.delay = 0.05
        self.receiver.start()
        self.changes(30)
        lines = self.audit_lines()
        self.start_agent()
        wait_until(lambda: len(self.receiver.bodies()) >= 10, "10 POSTs before the kill")
        self.stop_agent(signal.SIGKILL)
        self.assertLess(len(self.receiver.bodies()), len(lines), "killed mid-stream")
        self.start_agent()
        wait_until(lambda: self.receiver.bodies()[-1:] == lines[-1:], "the last line after the restart")
        got = self.receiver.bodies()
        # At least once: only the line in flight at the kill may come twice, right after itself.
        deduplicated = [b for i, b in enumerate(got) if i == 0 or b != got[i - 1]]
        self.assertEqual(deduplicated, lines)
        self.assertLessEqual(len(got) - len(lines), 1, "more than the line in flight came twice")
        self.assert_signed()

    def test_rotated_log_loses_nothing(self):
        self.receiver.start()
        self.start_agent()
        self.changes(4)
        self.wait_for(4)
        os.rename(self.log, self.log + ".1")  # logrotate: rename, the next change creates the log
        self.changes(4, prefix="r")
        self.wait_for(8)
        # Rotated again while the agent is stopped: it finishes .1 first.
        self.stop_agent()
        self.changes(3, prefix="s")
        os.rename(self.log + ".1", self.log + ".2")
        os.rename(self.log, self.log + ".1")
        self.changes(3, prefix="t")
        self.start_agent()
        lines = self.audit_lines(self.log + ".2", self.log + ".1", self.log)
        self.assertEqual(len(lines), 14)
        self.wait_for(14)
        time.sleep(0.5)
        self.assertEqual(self.receiver.bodies(), lines)

    def test_automatic_suspension_mails_the_admin(self):
        self.receiver.start()
        self.start_agent()
        self.cli("suspend", "a@example.com", "--service", "imap")  # an admin's: no mail
        for i in range(2):  # over spam.threshold = 1: send suspended automatically
            evidence = os.path.join(self.dir, f"spam-{i}.eml")
            with open(evidence, "w") as f:
                f.write(f"Subject: offer {i}\n\nbuy now {i}\n")
            self.cli("report-spam", "b@example.com", "--evidence", evidence)
        lines = self.audit_lines()
        self.wait_for(len(lines))
        wait_until(lambda: os.listdir(self.mail), "the admin's mail")
        time.sleep(0.5)
        names = os.listdir(self.mail)
        self.assertEqual(len(names), 1, names)
        with open(os.path.join(self.mail, names[0]), "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.default)
        self.assertEqual(msg["To"], "postmaster@example.com")
        self.assertIn("b@example.com", msg["Subject"])
        body = msg.get_content()
        self.assertIn("spam", body)
        self.assertIn("2 distinct message(s) within 1d (spam.threshold = 1)", body)
        self.assertIn("/evidence/b@example.com", body)


def main():
    global CLI
    parser = argparse.ArgumentParser()
    parser.add_argument("--cli", required=True)
    args, rest = parser.parse_known_args()
    CLI = args.cli
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
