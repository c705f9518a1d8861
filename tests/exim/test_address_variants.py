#!/usr/bin/env python3
"""Issue 12, item 2: every spelling of an address that Exim routes to a
suspended mailbox must be treated as that mailbox.  Quoted local parts with a
+tag ("bob+x y"@example.com) were delivered to a receive-suspended bob in
every mode, and accepted as the envelope sender of a send-suspended alice,
because the core called them "not a key" before dropping the tag.

Besides the fixed instances (RCPT in reject, discard and queue mode; MAIL
FROM on a local submission), a fuzz test generates local-part variants
(quotes, escapes, +tags, case, specials, long tags) and compares, for each,
the core's key (`mailsuspend status --json`) with the mailbox Exim's own
router resolves (`exim -bt` with route debugging: local_part_data of the
local_user router, which has local_part_suffix = +*), then checks that with
bob's receive suspended (reject) Exim refuses exactly the variants it
resolves to bob.  Default config values; the delivery mode is given per
suspension (--mode)."""
import json
import random
import re
import time

import eximtest
from eximtest import EximTestCase, reply_text

REJECT_TEXT = "Mailbox unavailable: the account is suspended."

# The reported variants (issue 12) and a few more of the same kind.
QUOTED_TAGS = ['"{u}+x y"', '"{u}+(x)"', '"{u}+x,y"', '"{u}+x\\"y"', '"{U}+x y"', '"{u}+x@y"',
               '"{u}+' + "t" * 150 + '"', '"\\{u}+x"']


def variants(user, forms=QUOTED_TAGS):
    return [f.format(u=user, U=user.upper()) + "@example.com" for f in forms]


class SmtpRaw:
    """One SMTP session sending commands as written (smtplib would requote)."""

    def __init__(self, env, source="127.0.0.1"):
        self.client = env.smtp(source)

    def cmd(self, line):
        code, text = self.client.docmd(line)
        return code, text.decode(errors="replace")

    def close(self):
        try:
            self.client.quit()
        finally:
            self.client.close()


class QuotedTagReceiveTest(EximTestCase):
    """RCPT TO a quoted +tag variant of a receive-suspended mailbox."""

    def transaction(self, rcpt, subject):
        s = SmtpRaw(self.env)
        try:
            self.assertEqual(s.cmd("MAIL FROM:<outside@remote.test>")[0], 250)
            rcpt_reply = s.cmd(f"RCPT TO:<{rcpt}>")
            mid = None
            if rcpt_reply[0] == 250:
                code, text = s.client.data(f"From: <outside@remote.test>\r\nSubject: {subject}\r\n\r\nhi\r\n")
                text = text.decode(errors="replace")
                self.assertEqual(code, 250, text)
                mid = re.search(r"id=(\S+)", text).group(1)
        finally:
            s.close()
        if mid:
            self.env.wait_done(mid)
        return rcpt_reply, mid

    def delivered_subjects(self, address):
        return [m.group(1) for msg in self.env.mailbox(address)
                for m in [re.search(r"^Subject: (.*)$", msg, re.M)] if m]

    def test_reject_mode_refuses_every_variant_at_rcpt(self):
        self.env.cli("suspend", "bob@example.com", "--service", "receive", "--mode", "reject")
        for i, rcpt in enumerate(variants("bob")):
            with self.subTest(rcpt=rcpt):
                reply, mid = self.transaction(rcpt, f"reject-{i}")
                self.assertEqual(reply[0], 550, reply)
                self.assertIn(REJECT_TEXT, reply_text(reply))
                self.assertIsNone(mid)
        self.assertEqual([s for s in self.delivered_subjects("bob@example.com") if s.startswith("reject-")], [])

    def test_discard_mode_discards_every_variant(self):
        self.env.cli("suspend", "carol@example.com", "--service", "receive", "--mode", "discard")
        for i, rcpt in enumerate(variants("carol")):
            with self.subTest(rcpt=rcpt):
                reply, mid = self.transaction(rcpt, f"discard-{i}")
                self.assertEqual(reply[0], 250, reply)
                self.assertTrue(self.env.log_lines(rf"{re.escape(mid)} => :blackhole: .*R=mailsuspend_receive"),
                                self.env.log_lines(re.escape(mid)))
                self.assertNotIn(mid, self.env.queue())
        self.assertEqual(self.delivered_subjects("carol@example.com"), [])

    def test_queue_mode_holds_every_variant(self):
        self.env.cli("suspend", "dave@example.com", "--service", "receive", "--mode", "queue")
        mids = []
        for i, rcpt in enumerate(variants("dave")):
            with self.subTest(rcpt=rcpt):
                reply, mid = self.transaction(rcpt, f"queue-{i}")
                self.assertEqual(reply[0], 250, reply)
                self.assertTrue(self.env.log_lines(rf"{re.escape(mid)} == .*R=mailsuspend_receive"),
                                self.env.log_lines(re.escape(mid)))
                mids.append(mid)
        self.assertEqual(self.delivered_subjects("dave@example.com"), [])
        queue = self.env.queue()
        for mid in mids:
            self.assertIn(mid, queue)
        # Lifting receive flushes the held variants at once (the flush
        # command's regex matches the quoted forms the queue holds), all but
        # the needlessly escaped "\dave+x", which Exim's next queue run delivers.
        self.env.cli("unsuspend", "dave@example.com", "--service", "receive")
        flushed = len(mids) - 1
        deadline = time.monotonic() + eximtest.WAIT
        while len(self.delivered_subjects("dave@example.com")) < flushed and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(len(self.delivered_subjects("dave@example.com")), flushed, self.env.queue())
        self.assertIn('"\\dave+x"@example.com', self.env.queue())

    def test_unsuspended_variants_still_delivered(self):
        # The normaliser must not refuse what it used to let through for an
        # account that is not suspended: erin gets her mail under every spelling.
        for i, rcpt in enumerate(variants("erin")):
            with self.subTest(rcpt=rcpt):
                reply, mid = self.transaction(rcpt, f"erin-{i}")
                self.assertEqual(reply[0], 250, reply)
        self.assertEqual(len(self.delivered_subjects("erin@example.com")), len(variants("erin")))


class QuotedTagSenderTest(EximTestCase):
    """MAIL FROM a quoted +tag variant of a send-suspended mailbox on a local
    submission (exim -bs: the envelope sender is who sends)."""

    def test_local_submission_refused_for_every_variant(self):
        self.env.cli("suspend", "alice@example.com", "--service", "send", "--reason", "spam run")
        for sender in variants("alice"):
            with self.subTest(sender=sender):
                out = self.env.local_smtp(sender, ["zed@example.com"], subject="quoted-sender")
                self.assertEqual(out.mail[0], 550, out)
                self.assertIn("5.7.13", out.mail[1])
        self.assertEqual(self.env.mailbox("zed@example.com"), [])

    def test_unsuspended_sender_variants_pass(self):
        out = self.env.local_smtp('"frank+x y"@example.com', ["zed@example.org"], subject="frank-ok")
        self.assertEqual(out.mail[0], 250, out)
        self.assertEqual(out.data[0], 250, out)


# ---- fuzz: the core's key against Exim's own resolution ----------------------

SPECIALS = ' ()<>,;:@[]."\\'


def quote(local):
    """RFC 5321 quoted-string form of local."""
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


def generated_variants(seed=12, count=160):
    rng = random.Random(seed)
    users = ["bob", "alice", "zed"]
    out = set()
    for _ in range(count):
        user = rng.choice(users)
        base = "".join(c.upper() if rng.random() < 0.3 else c for c in user)
        if rng.random() < 0.15:  # a base Exim cannot route: a special inside it
            k = rng.randrange(1, len(base))
            base = base[:k] + rng.choice(SPECIALS) + base[k:]
        tag = ""
        if rng.random() < 0.8:
            tag = "+" + "".join(rng.choice("abcXYZ09+-_" + SPECIALS) for _ in range(rng.randrange(0, 12)))
            if rng.random() < 0.05:
                tag += "t" * 150
        local = base + tag
        if rng.random() < 0.7 or any(c in SPECIALS for c in local):
            q = quote(local)
            if rng.random() < 0.3:  # needless quoted-pairs: \b is b
                q = '"' + "".join("\\" + c if c.isalnum() and rng.random() < 0.4 else c
                                  for c in q[1:-1]) + '"'
            local = q
        out.add(local + "@example.com")
    return sorted(out)


class FuzzAgainstEximTest(EximTestCase):
    daemon = False

    def exim_resolution(self, addresses):
        """address -> local part Exim's local_user router resolved, or None."""
        proc = self.env.exim("-d+route", "-bt", *addresses, check=False)
        result = {}
        # The debug output has one "routing <address>" section per address, in order.
        sections = re.split(r"^routing ", proc.stderr, flags=re.M)[1:]
        self.assertEqual(len(sections), len(addresses), proc.stderr[-2000:])
        for address, section in zip(addresses, sections):
            m = re.search(r"routed by local_user router", section)
            lp = re.search(r"local_part_data=(\S+)", section)
            result[address] = lp.group(1).lower() if m and lp else None
        return result, proc

    def core_key(self, address):
        proc = self.env.cli("status", "--json", address, check=False)
        if proc.returncode != 0:
            return None
        return json.loads(proc.stdout)["target"]

    def test_core_key_equals_exims_mailbox(self):
        addresses = generated_variants()
        resolved, _ = self.exim_resolution(addresses)
        routed = [a for a in addresses if resolved[a]]
        self.assertGreater(len(routed), 60, "the generator must produce routable variants")
        self.assertGreater(len(addresses) - len(routed), 5, "and some that are not")
        for address in addresses:
            with self.subTest(address=address):
                key = self.core_key(address)
                # What Exim hands the module: $local_part@$domain, unquoted.
                unquoted = self.core_key(self.unquoted(address))
                if resolved[address]:
                    self.assertEqual(key, resolved[address] + "@example.com")
                    self.assertEqual(unquoted, resolved[address] + "@example.com")

        # Now suspend bob's receive: Exim must refuse exactly what it routes to bob.
        self.env.cli("suspend", "bob@example.com", "--service", "receive", "--mode", "reject")
        _, proc = self.exim_resolution(addresses)
        # -bt prints one unindented line per address, in order.
        heads = [l for l in proc.stdout.splitlines() if l and not l[0].isspace()]
        self.assertEqual(len(heads), len(addresses), proc.stdout[-3000:])
        for address, head in zip(addresses, heads):
            with self.subTest(address=address, suspended=True):
                refused = ("is undeliverable: " + REJECT_TEXT) in head
                self.assertEqual(refused, resolved[address] == "bob", head)

    @staticmethod
    def unquoted(address):
        local, domain = address.rsplit("@", 1)
        if len(local) >= 2 and local[0] == local[-1] == '"':
            local = re.sub(r"\\(.)", r"\1", local[1:-1])
        return local + "@" + domain


if __name__ == "__main__":
    eximtest.main()
