#!/usr/bin/env python3
"""The store's writer lock held by another process, or the disk under the
store made slow, while the real Exim decides (issue 12 item 1, issue 13
item 3): no Exim process waits on either without a bound.

    test_host_lock.py --cli C --so S --snippets D --stall-lib L

With the lock held (this test opens store/lock as root and flock()s it):
the message that crosses a rate limit is refused promptly with the rate
text, a normal message is accepted promptly, and the sender whose
suspension waits in the outbox is refused at MAIL FROM at once.  A CLI
writer says whose lock it waits for and gives up at
store.admin_lock_timeout.  Once the lock is free, the sweep (the timer's
command) applies the outbox: the suspension is in the store with its audit
line.

With the disk slow (L, tests/faults/stall_sync.c, preloaded into the Exim
daemon, makes every flush of the store's files and the audit log wait
while a file exists): the replies to a crossing, a refused and a normal
message arrive promptly; the detached writer finishes once the disk is
fast again and the suspension is in the store once, with its audit line.
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "exim"))

import eximtest  # noqa: E402
import policytest as pt  # noqa: E402
from eximtest import Env, reply_text  # noqa: E402

PROMPT = 1.0        # seconds: an SMTP reply that waited on the lock would take longer
LIMIT = 2           # messages_per_day: crossed by the third message
# Changed from the defaults: small limits so a test crosses one, an hour's
# suspension so it is still in force when the lock is released, and a short
# admin timeout so the CLI's give-up is seen within the test.
CONF = f"""
limits: {{ messages_per_day = {LIMIT}; suspend_for = "1h"; extend_on_attempt = true; }};
spam: {{ sendmail_command = "{{dir}}/notice-mta -t -oi"; }};
"""
ADMIN_TIMEOUT = 3
STALL_LIB = None    # --stall-lib


class Submissions:
    """Timed submissions and the store's view, for both test classes."""

    def timed_send(self, user, subject):
        """One submission; returns (code, text) of the reply that decides it
        (MAIL FROM's when refused there, else DATA's) and how long the server
        took for that reply alone (connecting and AUTH are not the subject)."""
        client = self.env.smtp("127.0.0.21", user)
        try:
            start = time.monotonic()
            reply = client.mail(user)
            took = time.monotonic() - start
            if reply[0] == 250:
                self.assertEqual(client.rcpt("zed@example.com")[0], 250)
                start = time.monotonic()
                reply = client.data(f"From: <{user}>\r\nSubject: {subject}\r\n\r\nhello\r\n")
                took = time.monotonic() - start
            client.quit()
        finally:
            client.close()
        return (reply[0], reply[1].decode()), took

    def outbox(self):
        return sorted(n for n in os.listdir(os.path.join(self.store, "outbox")) if not n.startswith("."))

    def send_state(self, user):
        return pt.status(self.env, user)["services"]["send"]

    def assert_prompt(self, user, subject, code):
        reply, took = self.timed_send(user, subject)
        self.assertEqual(reply[0], code, (subject, reply))
        if code == 550:
            self.assertEqual(reply_text(reply), "5.7.13 " + pt.RATE_TEXT)
        self.assertLess(took, PROMPT, f"the reply to {subject!r} took {took:.2f}s")

    def suspend_lines(self, user):
        return [a for a in pt.audit(self.env) if a.get("target") == user and a.get("action") == "suspend"]


class HostLockHeld(Submissions, eximtest.EximTestCase):
    env_options = {"ms_extra": CONF}

    @classmethod
    def prepare(cls):
        with open(cls.env.ms_conf) as f:
            text = f.read()
        with open(cls.env.ms_conf, "w") as f:
            f.write(text.replace("store: {", f'store: {{\n  admin_lock_timeout = "{ADMIN_TIMEOUT}s";', 1))
        pt.write_notice_mta(cls.env)
        cls.store = os.path.join(cls.env.dir, "store")

    def test_lock_held_decisions_stand_and_land_later(self):
        user, other = "alice@example.com", "bob@example.com"
        lock = eximtest.HeldLock(self.store)
        try:
            for n in range(LIMIT):
                reply, took = self.timed_send(user, f"before-{n}")
                self.assertEqual(reply[0], 250, reply)
                self.assertLess(took, PROMPT, f"accepted message took {took:.2f}s")
            reply, took = self.timed_send(user, "crossing")
            self.assertEqual(reply[0], 550, reply)
            self.assertEqual(reply_text(reply), "5.7.13 " + pt.RATE_TEXT)
            self.assertLess(took, PROMPT, f"the crossing message's reply took {took:.2f}s")
            self.assertEqual(len(self.outbox()), 1, self.outbox())
            self.assertTrue(self.env.wait_log(r"rate suspension of alice@example.com handed to the outbox"))

            reply, took = self.timed_send(other, "normal")
            self.assertEqual(reply[0], 250, reply)
            self.assertLess(took, PROMPT, f"a normal message took {took:.2f}s")

            # Only in the outbox so far, yet enforced at MAIL FROM at once.
            self.assertFalse(self.send_state(user)["suspended"])
            reply, took = self.timed_send(user, "after")  # refused at MAIL FROM
            self.assertEqual(reply[0], 550, reply)
            self.assertEqual(reply_text(reply), "5.7.13 " + pt.RATE_TEXT)
            self.assertLess(took, PROMPT, f"the suspended sender's reply took {took:.2f}s")

            # An admin's writer waits, says for whom, and gives up at its timeout.
            start = time.monotonic()
            res = self.env.cli("sweep", check=False)
            took = time.monotonic() - start
            self.assertEqual(res.returncode, 1, res)
            self.assertIn(f"waiting for the store lock held by pid {os.getpid()}", res.stderr)
            self.assertIn("gave up after", res.stderr)
            self.assertGreaterEqual(took, ADMIN_TIMEOUT - 0.2)
            self.assertLess(took, ADMIN_TIMEOUT + 2)
        finally:
            lock.release()

        # The sweep timer's command applies the outbox through the usual commit.
        res = self.env.cli("sweep")
        self.assertIn("from the outbox", res.stderr)
        send = self.send_state(user)
        self.assertTrue(send["suspended"], send)
        self.assertEqual(send["source"], "rate")
        self.assertIn("messages_per_day", send["reason"])
        self.assertEqual(self.outbox(), [])
        lines = [a for a in pt.audit(self.env) if a.get("target") == user and a.get("action") == "suspend"]
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["actor"]["name"], "exim (outbox)")
        self.assertFalse(self.send_state(other)["suspended"])
        self.env.cli("check")

    def test_next_exim_writer_applies_the_outbox(self):
        first, second = "carol@example.com", "dave@example.com"
        lock = eximtest.HeldLock(self.store)
        try:
            for n in range(LIMIT):
                self.assertEqual(self.timed_send(first, f"c{n}")[0][0], 250)
            self.assertEqual(self.timed_send(first, "c-crossing")[0][0], 550)
            self.assertEqual(len(self.outbox()), 1, self.outbox())
        finally:
            lock.release()
        # Another sender crosses with the lock free: that Exim process's
        # writer applies what waits in the outbox, then its own change.
        for n in range(LIMIT):
            self.assertEqual(self.timed_send(second, f"d{n}")[0][0], 250)
        self.assertEqual(self.timed_send(second, "d-crossing")[0][0], 550)
        self.assertEqual(self.outbox(), [])
        for user in (first, second):
            send = self.send_state(user)
            self.assertTrue(send["suspended"], (user, send))
            self.assertEqual(send["source"], "rate")
        actors = {a["target"]: a["actor"]["name"] for a in pt.audit(self.env)
                  if a.get("action") == "suspend" and a.get("target") in (first, second)}
        self.assertEqual(actors, {first: "exim (outbox)", second: "exim"})
        self.env.cli("check")


class SlowDisk(Submissions, eximtest.EximTestCase):
    """Every flush of the store's files and the audit log waits while
    cls.stall exists (stall_sync.c in the Exim daemon only: the CLI's
    own writes in this test run after the disk is fast again)."""
    env_options = {"ms_extra": CONF}

    @classmethod
    def prepare(cls):
        if not STALL_LIB or not os.path.exists(STALL_LIB):
            eximtest.fail_setup(f"--stall-lib {STALL_LIB!r} does not exist (build first)")
        pt.write_notice_mta(cls.env)
        cls.store = os.path.join(cls.env.dir, "store")
        cls.stall = os.path.join(cls.env.dir, "stall")

    @classmethod
    def start_daemon(cls):
        plain = cls.env.env
        cls.env.env = dict(plain, LD_PRELOAD=STALL_LIB, MS_STALL_FILE=cls.stall,
                           MS_STALL_PREFIXES=os.path.realpath(cls.store) + "/:" +
                           os.path.realpath(os.path.join(cls.env.dir, "audit.log")))
        try:
            cls.env.start_daemon()
        finally:
            cls.env.env = plain

    @classmethod
    def tearDownClass(cls):
        if os.path.exists(cls.stall):
            os.unlink(cls.stall)
        super().tearDownClass()

    def test_slow_disk_holds_up_no_reply(self):
        user, other = "erin@example.com", "frank@example.com"
        open(self.stall, "w").close()
        try:
            for n in range(LIMIT):
                self.assert_prompt(user, f"before-{n}", 250)
            self.assert_prompt(user, "crossing", 550)
            self.assert_prompt(other, "normal", 250)
            self.assert_prompt(user, "again", 550)  # refused by the counters meanwhile
            # The detached writer still waits on the audit log's flush (its
            # line is written, not yet synced): not in the store yet.
            self.assertFalse(self.send_state(user)["suspended"])
        finally:
            os.unlink(self.stall)
        deadline = time.monotonic() + eximtest.WAIT
        while not self.send_state(user)["suspended"] and time.monotonic() < deadline:
            time.sleep(0.1)
        send = self.send_state(user)
        self.assertTrue(send["suspended"], send)
        self.assertEqual(send["source"], "rate")
        # A second writer (for "again") that found the lock taken left its
        # change in the outbox; applied, it finds the suspension in force.
        self.env.cli("sweep")
        self.assertEqual(self.outbox(), [])
        lines = self.suspend_lines(user)
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["actor"]["name"], "exim")
        self.assertFalse(self.send_state(other)["suspended"])
        self.env.cli("check")


if __name__ == "__main__":
    if "--stall-lib" in sys.argv:
        at = sys.argv.index("--stall-lib")
        STALL_LIB = sys.argv[at + 1]
        del sys.argv[at:at + 2]
    eximtest.main()
