#!/usr/bin/env python3
"""Rate limits counted by the Exim module (issue 5, seed 004) against the
real Exim: the crossing message refused with the text, send suspended with
source rate and an expiry, exact counts under concurrent SMTP clients,
other mailboxes unaffected, lift after expiry, extension by attempts,
escalation to locked, recipients_per_message, and the AUP notice carrying
the kept samples in evidence.txt.  Limits: policytest.POLICY_CONF."""
import threading

import eximtest
import policytest as pt
from eximtest import EximTestCase, reply_text


class RateLimitTest(EximTestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = pt.make_env(cls.__name__)
        try:
            cls.env.start_daemon()
        except BaseException:
            cls.env.stop()
            raise

    def submit(self, user, rcpts=("zed@example.com",), source="127.0.0.1", subject="m", body="hello"):
        return self.env.send(user, list(rcpts), user=user, source=source, subject=subject, body=body)

    def assertAccepted(self, out):
        self.assertEqual(out.mail[0], 250, out)
        self.assertIsNotNone(out.data, out)
        self.assertEqual(out.data[0], 250, out)

    def assertRateRefusedAtData(self, out):
        self.assertEqual(out.mail[0], 250, out)
        self.assertEqual(out.data[0], 550, out)
        self.assertEqual(reply_text(out.data), "5.7.13 " + pt.RATE_TEXT)

    def assertRateRefusedAtMail(self, out):
        self.assertEqual(out.mail[0], 550, out)
        self.assertEqual(reply_text(out.mail), "5.7.13 " + pt.RATE_TEXT)
        self.assertIsNone(out.data)

    def delivered(self, rcpt, subject_prefix):
        return [m for m in self.env.mailbox(rcpt) if f"Subject: {subject_prefix}" in m]

    # ---- messages_per_day ------------------------------------------------------
    def test_crossing_message_refused_and_send_suspended(self):
        user = "alice@example.com"
        for n in range(pt.MESSAGES_PER_DAY):
            self.assertAccepted(self.submit(user, source="127.0.0.11", subject=f"alice-{n}"))
        crossing = self.submit(user, source="127.0.0.11", subject="alice-crossing",
                               body="the message that crossed the limit")
        self.assertRateRefusedAtData(crossing)

        send = pt.send_state(self.env, user)
        self.assertTrue(send["suspended"], send)
        self.assertEqual(send["source"], "rate")
        self.assertFalse(send["locked"])
        self.assertIsNotNone(send["expires"])
        self.assertGreater(send["expires"], send["since"])
        self.assertLessEqual(send["expires"] - send["since"], pt.SUSPEND_FOR + 1)
        self.assertIn("messages_per_day", send["reason"])
        # Nothing else of alice's was suspended: she still logs in and receives.
        for service in ("imap", "pop3", "webmail", "receive"):
            self.assertFalse(pt.status(self.env, user)["services"][service]["suspended"], service)

        # Audited as Exim's doing, once.
        mine = [a for a in pt.audit(self.env) if a.get("target") == user and a.get("action") == "suspend"]
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual(mine[0]["actor"]["name"], "exim")
        self.assertTrue(self.env.wait_log(
            r"mailsuspend: send refused sender=alice@example.com .*client=127\.0\.0\.11 at=data recipients=1"))

        # The next attempt is refused at MAIL FROM already.
        self.assertRateRefusedAtMail(self.submit(user, source="127.0.0.11", subject="alice-after"))
        # Exactly the accepted messages were delivered.
        self.env.wait_idle()
        self.assertEqual(len(self.delivered("zed@example.com", "alice-")), pt.MESSAGES_PER_DAY)

        # Exim only left the AUP notice pending: it ran no notice MTA.
        self.assertTrue(pt.notice_pending(self.env, user))
        self.assertEqual(pt.sent_notices_for(self.env, user), [])
        # The sweep (the timer, every minute) sent it to the domain's abuse
        # contact with the crossing message as evidence.txt.
        self.env.cli("sweep")  # other tests' notices may go out with it (one daemon)
        self.assertFalse(pt.notice_pending(self.env, user))
        notice = pt.sent_notices_for(self.env, user)
        self.assertEqual(len(notice), 1, [n.as_string() for n in notice])
        self.assertEqual(notice[0]["To"], "abuse@example.net")
        evidence = pt.evidence_of(notice[0])
        self.assertIsNotNone(evidence, notice[0].as_string())
        self.assertIn("Subject: alice-crossing", evidence)
        self.assertIn("the message that crossed the limit", evidence)
        self.assertNotIn("Subject: alice-0", evidence)  # accepted mail is not evidence
        # Sent exactly once: nothing left for the next sweep or send-notices.
        self.env.cli("send-notices")
        self.env.cli("sweep")
        self.assertEqual(len(pt.sent_notices_for(self.env, user)), 1)

    def test_concurrent_clients_count_exactly(self):
        user, other = "bob@example.com", "carol@example.com"
        threads, per_thread = 4, 4
        outcomes, lock = [], threading.Lock()

        def client(t):
            for n in range(per_thread):
                out = self.submit(user, source="127.0.0.12", subject=f"bob-{t}-{n}")
                with lock:
                    outcomes.append(out)

        workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        # Meanwhile another mailbox sends as usual.
        others = [self.submit(other, source="127.0.0.13", subject=f"carol-{n}") for n in range(3)]
        for w in workers:
            w.join()

        accepted = [o for o in outcomes if o.data and o.data[0] == 250]
        self.assertEqual(len(outcomes), threads * per_thread)
        self.assertEqual(len(accepted), pt.MESSAGES_PER_DAY, outcomes)
        for o in outcomes:
            if o not in accepted:  # refused with the rate text, at MAIL or DATA
                reply = o.data if o.mail[0] == 250 else o.mail
                self.assertEqual(reply_text(reply), "5.7.13 " + pt.RATE_TEXT, o)
        self.assertEqual(pt.send_state(self.env, user)["source"], "rate")
        suspensions = [a for a in pt.audit(self.env)
                       if a.get("target") == user and a.get("action") == "suspend"]
        self.assertEqual(len(suspensions), 1, suspensions)

        for o in others:
            self.assertAccepted(o)
        self.assertFalse(pt.send_state(self.env, other)["suspended"])
        self.env.wait_idle()
        self.assertEqual(len(self.delivered("zed@example.com", "bob-")), pt.MESSAGES_PER_DAY)
        self.assertEqual(len(self.delivered("zed@example.com", "carol-")), 3)

    # ---- lift, extension, escalation -------------------------------------------
    def test_offdomain_crossing_lifts_after_expiry(self):
        user = "dave@example.com"
        remote = ["r1@remote.test", "r2@remote.test", "r3@example.org"]  # all off-domain for dave
        self.assertAccepted(self.submit(user, remote, source="127.0.0.14", subject="dave-0"))
        self.assertAccepted(self.submit(user, remote, source="127.0.0.14", subject="dave-1"))
        # 6 off-domain recipients counted; 3 more take 8/day over.
        self.assertRateRefusedAtData(self.submit(user, remote, source="127.0.0.14", subject="dave-2"))
        send = pt.send_state(self.env, user)
        self.assertEqual(send["source"], "rate")
        self.assertIn("off-domain", send["reason"])
        # Waiting (no attempts) past suspend_for lifts it: in force no more,
        # and a message within the limits goes out again.
        pt.sleep_past(send["expires"])
        self.assertFalse(pt.send_state(self.env, user)["suspended"])
        out = self.submit(user, ["zed@example.com"], source="127.0.0.14", subject="dave-after")
        self.assertAccepted(out)
        self.env.wait_done(out.message_id)
        self.assertTrue(self.delivered("zed@example.com", "dave-after"))
        # sweep records the expiry in the audit log.
        self.env.cli("sweep")

    def test_attempts_while_suspended_extend_it(self):
        user = "erin@example.com"
        for n in range(pt.MESSAGES_PER_DAY):
            self.assertAccepted(self.submit(user, source="127.0.0.15", subject=f"erin-{n}"))
        self.assertRateRefusedAtData(self.submit(user, source="127.0.0.15", subject="erin-x"))
        before = pt.send_state(self.env, user)["expires"]
        pt.sleep_past(before - pt.SUSPEND_FOR, margin=1.5)  # past the extension step (1 s here)
        self.assertRateRefusedAtMail(self.submit(user, source="127.0.0.15", subject="erin-again"))
        after = pt.send_state(self.env, user)
        self.assertTrue(after["suspended"])
        self.assertGreater(after["expires"], before)
        extends = [a for a in pt.audit(self.env) if a.get("target") == user and a.get("action") == "extend"]
        self.assertEqual(len(extends), 1, extends)
        self.assertEqual(extends[0]["expires_before"], before)
        self.assertEqual(extends[0]["actor"]["name"], "exim")

    def test_escalation_to_locked(self):
        user = "frank@example.com"
        for n in range(pt.MESSAGES_PER_DAY):
            self.assertAccepted(self.submit(user, source="127.0.0.16", subject=f"frank-{n}"))
        # The counts stay in the 24 h window, so after each expiry the next
        # message crosses again: suspension 1 and 2 expire, 3 is locked.
        big = ("spam line " * 7 + "\r\n") * 4000  # ~300 KB: the sample is cut, Exim unharmed
        for round_ in range(pt.ESCALATE_AFTER + 1):
            out = self.submit(user, source="127.0.0.16", subject=f"frank-x{round_}",
                              body=big if round_ == 0 else "hello")
            self.assertRateRefusedAtData(out)
            self.assertTrue(pt.notice_pending(self.env, user))  # Exim sends none itself
            self.env.cli("sweep")  # as the timer would, within the minute
            send = pt.send_state(self.env, user)
            self.assertTrue(send["suspended"])
            self.assertEqual(send["source"], "rate")
            if round_ < pt.ESCALATE_AFTER:
                self.assertFalse(send["locked"], send)
                self.assertIsNotNone(send["expires"])
                pt.sleep_past(send["expires"])
        self.assertTrue(send["locked"], send)
        self.assertIsNone(send["expires"], send)
        # One notice per automatic suspension; the big message's sample was cut.
        frank_notices = pt.sent_notices_for(self.env, user)
        self.assertEqual(len(frank_notices), pt.ESCALATE_AFTER + 1)
        first = [e for e in map(pt.evidence_of, frank_notices) if e and "Subject: frank-x0" in e]
        self.assertEqual(len(first), 1)
        self.assertIn("spam line", first[0])
        self.assertLess(len(first[0]), 140 * 1024)
        self.assertIn("permanent", send["reason"])
        # Locked: an ordinary unsuspend is refused (exit 3); root --admin lifts it.
        self.assertEqual(self.env.cli("unsuspend", user, "--service", "send", check=False).returncode, 3)
        self.env.cli("unsuspend", user, "--service", "send", "--admin")
        # The lift reset the mailbox's counters: mail goes out again.
        self.assertAccepted(self.submit(user, source="127.0.0.16", subject="frank-lifted"))

    # ---- recipients_per_message ------------------------------------------------
    def test_too_many_recipients_refused_nothing_suspended(self):
        user = "grace@example.com"
        rcpts = [f"{u}@example.com" for u in ("zed", "heidi", "ivan", "judy")]
        out = self.submit(user, rcpts, source="127.0.0.17", subject="grace-many")
        self.assertEqual(out.data[0], 550, out)
        self.assertTrue(reply_text(out.data).startswith("5.5.3 " + pt.RECIPIENTS_TEXT), out.data)
        self.assertFalse(pt.send_state(self.env, user)["suspended"])
        self.assertTrue(self.env.wait_log(
            r"mailsuspend: message refused sender=grace@example.com client=127\.0\.0\.17 at=data "
            r"recipients=4 limit=recipients_per_message"))
        # Not counted: the limit's worth of messages still goes out.
        for n in range(pt.MESSAGES_PER_DAY):
            self.assertAccepted(self.submit(user, rcpts[:3], source="127.0.0.17", subject=f"grace-{n}"))
        self.env.wait_idle()
        self.assertFalse(self.delivered("zed@example.com", "grace-many"))

    # ---- per-IP limit -------------------------------------------------------------
    def test_ip_limit_throttles_the_ip_and_suspends_nobody(self):
        # Issue 12, item 7: ivan and judy fill 127.0.0.18's hour (12 off-domain
        # recipients); the bystander whose message crosses it used to be
        # suspended.  Now the IP is throttled (451 4.7.1, messages.ip_throttled)
        # and nobody's send is suspended.
        remote = ["r1@remote.test", "r2@remote.test", "r3@example.org"]
        for user in ("ivan@example.com", "judy@example.com"):
            for n in range(2):
                self.assertAccepted(self.submit(user, remote, source="127.0.0.18", subject=f"fill-{n}"))
        bystander = "sender@example.com"
        out = self.submit(bystander, ["r1@remote.test"], source="127.0.0.18", subject="bystander")
        self.assertEqual(out.mail[0], 250, out)
        self.assertEqual(out.data[0], 451, out)
        self.assertEqual(reply_text(out.data), "4.7.1 " + pt.IP_THROTTLED_TEXT)
        for user in ("ivan@example.com", "judy@example.com", bystander):
            self.assertFalse(pt.send_state(self.env, user)["suspended"], user)
        self.assertTrue(self.env.wait_log(
            r"mailsuspend: message throttled sender=sender@example\.com client=127\.0\.0\.18 at=data "
            r"recipients=1 limit=offdomain_recipients_per_hour_per_ip"))
        self.assertFalse([a for a in pt.audit(self.env) if a.get("action") == "suspend"
                          and a.get("target") in ("ivan@example.com", "judy@example.com", bystander)])
        # The IP stays throttled for off-domain mail, whoever sends it...
        out = self.submit("ivan@example.com", ["r2@remote.test"], source="127.0.0.18", subject="ivan-again")
        self.assertEqual(out.data[0], 451, out)
        # ...but the refused messages were not counted against the senders, mail
        # within the domain still goes out from it, and other IPs are not affected.
        self.assertAccepted(self.submit(bystander, ["zed@example.com"], source="127.0.0.18", subject="local"))
        self.assertAccepted(self.submit(bystander, ["r1@remote.test"], source="127.0.0.19", subject="other-ip"))
        self.assertFalse(pt.send_state(self.env, bystander)["suspended"])

    # ---- local submissions -------------------------------------------------------
    def test_local_sendmail_counted_after_data(self):
        user = "heidi@example.com"
        for n in range(pt.MESSAGES_PER_DAY):
            proc = self.env.sendmail(user, ["zed@example.com"], subject=f"heidi-{n}")
            self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        proc = self.env.sendmail(user, ["zed@example.com"], subject="heidi-crossing")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(pt.RATE_TEXT, proc.stdout + proc.stderr)
        send = pt.send_state(self.env, user)
        self.assertEqual(send["source"], "rate")
        self.assertTrue(self.env.wait_log(r"send refused sender=heidi@example.com .*client=local at=data recipients=1"))


if __name__ == "__main__":
    eximtest.main()
