#!/usr/bin/env python3
"""Holding outgoing mail (issue 16, item 1) against the real Exim: a sender
suspended with --hold has its submissions (SMTP AUTH, local sendmail)
accepted and kept in the queue, delivered to nobody, not even by a forced
queue run; `held` lists them; `release` delivers them at once, `release
--delete` removes them (audited with the count); held mail past
delivery.queue_expiry bounces to the sender; a rate limit with
limits.action = "hold" holds the message that crosses it and the ones after."""
import json
import re
import time

import eximtest
import policytest as pt
from eximtest import EximTestCase


def subjects(env, address):
    return [m.split("Subject: ", 1)[1].split("\n", 1)[0] for m in env.mailbox(address) if "Subject: " in m]


def held(env, target):
    return json.loads(env.cli("held", target, "--json").stdout)


class HoldTest(EximTestCase):
    def submit(self, user, subject, rcpts=("zed@example.com",)):
        out = self.env.send(user, list(rcpts), user=user, subject=subject)
        self.assertEqual(out.mail[0], 250, out)
        self.assertEqual(out.data[0], 250, out)
        self.env.wait_done(out.message_id)
        return out.message_id

    def assertHeldInQueue(self, ids):
        queue = self.env.queue()
        for i in ids:
            self.assertIn(i, queue)
            self.assertTrue(self.env.log_lines(rf"{re.escape(i)} == \S+ R=mailsuspend_hold defer"), i)

    def test_held_mail_is_kept_listed_and_delivered_on_release(self):
        env = self.env
        env.cli("suspend", "alice@example.com", "--service", "send", "--hold", "--reason", "hijacked")
        smtp_id = self.submit("alice@example.com", "held-smtp", ("zed@example.com", "grace@example.org"))
        self.assertTrue(env.log_lines(rf"send held sender=alice@example.com .*id={re.escape(smtp_id)}"))
        local = env.sendmail("alice@example.com", ["zed@example.com"], subject="held-local")
        self.assertEqual(local.returncode, 0, local.stderr)
        local_id = env.wait_log(r"send held sender=alice@example.com .*client=local")[-1]
        local_id = re.search(r"id=(\S+)", local_id).group(1)
        env.wait_done(local_id)
        # A forced run of the whole queue, frozen mail included, still delivers nothing.
        env.exim("-qff")
        env.wait_idle()
        self.assertHeldInQueue([smtp_id, local_id])
        self.assertFalse({"held-smtp", "held-local"} & set(subjects(env, "zed@example.com")))
        self.assertEqual(subjects(env, "grace@example.org"), [])

        listed = held(env, "alice@example.com")
        self.assertEqual(sorted(m["id"] for m in listed), sorted([smtp_id, local_id]))
        by_id = {m["id"]: m for m in listed}
        self.assertEqual(by_id[smtp_id]["subject"], "held-smtp")
        self.assertEqual(sorted(by_id[smtp_id]["recipients"]), ["grace@example.org", "zed@example.com"])
        self.assertEqual(by_id[local_id]["recipients"], ["zed@example.com"])
        self.assertTrue(all(m["held_for"] == "alice@example.com" and m["size"] > 0 and m["age"] >= 0
                            for m in listed), listed)
        self.assertLessEqual({smtp_id, local_id}, {m["id"] for m in held(env, "@example.com")})
        self.assertEqual(held(env, "bob@example.com"), [])

        out = env.cli("release", "alice@example.com")
        self.assertIn("released 2 held message(s) of alice@example.com", out.stdout)
        self.assertFalse(pt.send_state(env, "alice@example.com")["suspended"])
        self.assertEqual(sorted(s for s in subjects(env, "zed@example.com") if s.startswith("held-")),
                         ["held-local", "held-smtp"])
        self.assertEqual(subjects(env, "grace@example.org"), ["held-smtp"])
        self.assertEqual(held(env, "alice@example.com"), [])
        lines = [l for l in pt.audit(env) if l.get("action") == "release-held" and l["target"] == "alice@example.com"]
        self.assertEqual([l["messages"] for l in lines], [2])
        self.assertEqual(sorted(lines[0]["ids"]), sorted([smtp_id, local_id]))

    def test_release_delete_removes_the_held_mail_and_records_the_count(self):
        env = self.env
        env.cli("suspend", "bob@example.com", "--service", "send", "--hold")
        ids = [self.submit("bob@example.com", f"spam-{n}") for n in range(3)]
        self.assertEqual(len(held(env, "bob@example.com")), 3)
        out = env.cli("release", "bob@example.com", "--delete")
        self.assertIn("deleted 3 held message(s) of bob@example.com", out.stdout)
        queue = env.queue()
        for i in ids:
            self.assertNotIn(i, queue)
        self.assertFalse(any(s.startswith("spam-") for s in subjects(env, "zed@example.com")))
        self.assertFalse(pt.send_state(env, "bob@example.com")["suspended"])
        lines = [l for l in pt.audit(env) if l.get("action") == "delete-held" and l["target"] == "bob@example.com"]
        self.assertEqual([l["messages"] for l in lines], [3])
        self.assertEqual(sorted(lines[0]["ids"]), sorted(ids))

    def test_plain_send_suspension_refuses_and_has_nothing_to_release(self):
        env = self.env
        env.cli("suspend", "carol@example.com", "--service", "send")
        out = env.send("carol@example.com", ["zed@example.com"], user="carol@example.com", subject="c")
        self.assertEqual(out.mail[0], 550, out)
        refused = env.cli("release", "carol@example.com", check=False)
        self.assertEqual(refused.returncode, 3, refused)
        self.assertIn("not held", refused.stderr)
        self.assertTrue(pt.send_state(env, "carol@example.com")["suspended"])
        bad = env.cli("suspend", "carol@example.com", "--service", "imap", "--hold", check=False)
        self.assertEqual(bad.returncode, 2, bad)
        self.assertIn("--hold needs the send service", bad.stderr)

    def test_unsuspend_of_a_held_send_delivers_the_held_mail_at_once(self):
        env = self.env
        env.cli("suspend", "ivan@example.com", "--service", "send", "--hold")
        i = self.submit("ivan@example.com", "ivan-held")
        self.assertHeldInQueue([i])
        env.cli("unsuspend", "ivan@example.com", "--service", "send")
        self.assertIn("ivan-held", subjects(env, "zed@example.com"))
        self.assertNotIn(i, env.queue())

    def test_a_domain_hold_holds_every_mailbox_and_is_released_by_domain(self):
        env = self.env
        env.cli("suspend", "@example.org", "--service", "send", "--hold")
        i = self.submit("heidi@example.org", "dom-held")
        self.assertHeldInQueue([i])
        self.assertEqual([m["id"] for m in held(env, "heidi@example.org")], [i])
        through = env.cli("release", "heidi@example.org", check=False)
        self.assertEqual(through.returncode, 3, through)
        self.assertIn("release @example.org", through.stderr)
        env.cli("release", "@example.org")
        self.assertEqual(subjects(env, "zed@example.com").count("dom-held"), 1)


class HoldExpiryTest(EximTestCase):
    # Held mail older than 2 s bounces: the default (4d8h) cannot pass in a test.
    env_options = {"queue_expiry": "2s"}

    def test_held_mail_past_queue_expiry_bounces_to_the_sender(self):
        env = self.env
        env.cli("suspend", "dave@example.com", "--service", "send", "--hold")
        out = env.send("dave@example.com", ["zed@example.com"], user="dave@example.com", subject="expiring")
        self.assertEqual(out.data[0], 250, out)
        env.wait_done(out.message_id)
        self.assertIn(out.message_id, env.queue())
        time.sleep(3)  # let the message age past queue_expiry (no timing is asserted)
        env.exim("-qff")
        env.wait_idle()
        self.assertNotIn(out.message_id, env.queue())
        mid = re.escape(out.message_id)
        self.assertTrue(env.log_lines(rf"{mid} \*\* zed@example.com R=mailsuspend_hold"))
        self.assertEqual(subjects(env, "zed@example.com"), [])
        bounces = [m for m in env.mailbox("dave@example.com") if "expiring" in m]
        self.assertEqual(len(bounces), 1)
        self.assertIn("Mail delivery failed", bounces[0])


class RateHoldTest(EximTestCase):
    # limits.action = "hold" (default "refuse") with a 2-message day: the
    # third message crosses it and is held, not refused.
    env_options = {"ms_extra": 'limits: { messages_per_day = 2; action = "hold"; };\n'}

    def test_the_crossing_message_and_the_next_are_held(self):
        env = self.env
        for n in range(2):
            out = env.send("erin@example.com", ["zed@example.com"], user="erin@example.com", subject=f"ok-{n}")
            self.assertEqual(out.data[0], 250, out)
            env.wait_done(out.message_id)
        crossing = env.send("erin@example.com", ["zed@example.com"], user="erin@example.com", subject="crossing")
        self.assertEqual(crossing.data[0], 250, crossing)
        env.wait_done(crossing.message_id)
        state = pt.send_state(env, "erin@example.com")
        self.assertTrue(state["suspended"])
        self.assertEqual(state["source"], "rate")
        self.assertTrue(state.get("hold"), state)
        after = env.send("erin@example.com", ["zed@example.com"], user="erin@example.com", subject="after")
        self.assertEqual(after.mail[0], 250, after)
        self.assertEqual(after.data[0], 250, after)
        env.wait_done(after.message_id)
        self.assertEqual(sorted(subjects(env, "zed@example.com")), ["ok-0", "ok-1"])
        self.assertEqual(sorted(m["subject"] for m in held(env, "erin@example.com")), ["after", "crossing"])


if __name__ == "__main__":
    eximtest.main()
