#!/usr/bin/env python3
"""The fleet enforced by the real mail servers of every node (issue 15):

  node a: an Exim (tests/exim/eximtest.py), its store and its agent;
  node b: an Exim and a Dovecot (tests/dovecot/harness.py) on one store,
          with its agent;
  node c: a Dovecot, its store and its agent.

A suspension written on a is refused by the Dovecots of b and c (IMAP, then
POP3, with the admin's reason) and by b's Exim, and lifted on a they log in
and send again.  An automatic rate suspension made by b's Exim reaches a's
store and a's Exim refuses the sender: made straight in b's store, and made
through b's outbox while the store's lock was taken (the agent applies the
outbox itself, with no other change to wake it).

test_fleet_mail.py --cli PATH --so PATH --snippets DIR --modules DIR --snippet FILE
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "exim"))
sys.path.insert(0, os.path.join(HERE, "..", "dovecot"))
import eximtest  # noqa: E402
import fleetenv  # noqa: E402
import harness  # noqa: E402
import policytest  # noqa: E402
from eximtest import reply_text  # noqa: E402
from fleetenv import wait_until  # noqa: E402

DOVECOT_ARGS = None  # argparse.Namespace(cli, modules, snippet) for harness.Dovecot
# Changed from the default (600): a test crosses the limit with its third
# message.  suspend_for is an hour so the suspension is still in force when
# the other node looks.
RATE_LIMIT = 2
LIMITS = f'limits: {{ messages_per_day = {RATE_LIMIT}; suspend_for = "1h"; }};\n'

# Each login from its own loopback address: Dovecot's anvil slows down
# repeated refused logins from one address (127.0.0.2 is the webmail host).
_sources = (f"127.0.9.{i}" for i in itertools.count(1))


class SharedStoreDovecot(harness.Dovecot):
    """A Dovecot reading an existing mailsuspend.conf and store: node b's,
    which its Exim uses too."""

    def __init__(self, args, config, **options):
        self.shared_config = config
        super().__init__(args, create_store=False, **options)

    def _write_mailsuspend_conf(self, *unused):
        self.config = self.shared_config


class Agent:
    """`mailsuspend sync` for one node's config."""

    def __init__(self, conf, log):
        self.log = log
        with open(log, "ab") as f:
            self.proc = subprocess.Popen([eximtest.PATHS["cli"], "--config", conf, "sync"],
                                         stdout=subprocess.DEVNULL, stderr=f)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()


def status(cli, target):
    return json.loads(cli("status", target, "--json").stdout)


class FleetMail(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_prerequisites(DOVECOT_ARGS)
        cls.cleanup = []
        try:
            cls.start_nodes()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start_nodes(cls):
        cls.fleet = fleetenv.Fleet([])  # the Redis and the fleet key; the nodes are below
        cls.cleanup.append(cls.fleet.stop)
        pw = os.path.join(cls.fleet.root, "redis.pw")
        fleetenv.write_password_file(pw)

        def group(node):
            return "\n" + fleetenv.fleet_group(node, pw, cls.fleet.key)

        cls.a = eximtest.Env("fleet-a", ms_extra=group("a"))
        cls.cleanup.append(cls.a.stop)
        cls.b = eximtest.Env("fleet-b", ms_extra=group("b") + LIMITS)
        cls.cleanup.append(cls.b.stop)
        for env in (cls.a, cls.b):
            env.start_daemon()
        cls.b_dovecot = SharedStoreDovecot(DOVECOT_ARGS, cls.b.ms_conf)
        cls.cleanup.append(cls.b_dovecot.stop)
        cls.c = harness.Dovecot(DOVECOT_ARGS, include_reason=True, mailsuspend_conf=group("c"))
        cls.cleanup.append(cls.c.stop)
        for dovecot in (cls.b_dovecot, cls.c):
            dovecot.start()
        cls.agents = {}
        for name, conf, where in (("a", cls.a.ms_conf, cls.a.dir), ("b", cls.b.ms_conf, cls.b.dir),
                                  ("c", cls.c.config, cls.c.tmp)):
            cls.agents[name] = Agent(conf, os.path.join(where, "sync.log"))
            cls.cleanup.append(cls.agents[name].stop)

    @classmethod
    def tearDownClass(cls):
        for step in reversed(cls.cleanup):
            try:
                step()
            except Exception as e:  # the others are cleaned up all the same
                print(f"clean-up: {e}", file=sys.stderr)

    def tearDown(self):
        for name, dovecot in (("b", self.b_dovecot), ("c", self.c)):
            self.assertTrue(dovecot.alive(), f"node {name}'s dovecot died:\n" + dovecot.log_text()[-3000:])
            self.assertNotIn("Panic:", dovecot.log_text())
        for env in (self.a, self.b):
            self.assertEqual(env.panic_log(), "")

    # ---- the nodes' views -------------------------------------------------
    def on_b_and_c(self, target, service, suspended):
        """Waits until the stores of b and c have service of target as asked."""
        for name, cli in (("b", self.b.cli), ("c", self.c.cli)):
            wait_until(lambda: status(cli, target)["services"][service]["suspended"] == suspended,
                       f"node {name}'s store to have {service} of {target} suspended={suspended}")

    def imap(self, dovecot, user):
        reply, conn = dovecot.imap_login(user, source=next(_sources))
        conn.close()
        return reply

    def pop3(self, dovecot, user):
        reply, conn = dovecot.pop3_login(user, source=next(_sources))
        conn.close()
        return reply

    def assertRefused(self, reply, prefix, reason):
        self.assertTrue(reply.startswith(prefix), reply)
        self.assertIn(reason, reply)

    def assertDovecotsLetIn(self, user):
        for dovecot in (self.b_dovecot, self.c):
            reply = self.imap(dovecot, user)
            self.assertTrue(reply.startswith("a OK "), reply)
            reply = self.pop3(dovecot, user)
            self.assertTrue(reply.startswith("+OK"), reply)

    # ---- a suspension written on a ---------------------------------------
    def test_imap_then_pop3_suspended_on_a_refused_by_the_dovecots_of_b_and_c(self):
        user, reason = "bob@example.com", "unpaid invoice 7 (fleet)"
        self.assertDovecotsLetIn(user)  # and fills their auth caches
        self.a.cli("suspend", user, "--service", "imap", "--reason", reason)
        self.on_b_and_c(user, "imap", True)
        for dovecot in (self.b_dovecot, self.c):
            self.assertRefused(self.imap(dovecot, user), "a NO [CONTACTADMIN] ", reason)
            self.assertTrue(self.pop3(dovecot, user).startswith("+OK"))  # only imap is suspended
        self.a.cli("suspend", user, "--service", "pop3", "--reason", reason)
        self.on_b_and_c(user, "pop3", True)
        for dovecot in (self.b_dovecot, self.c):
            self.assertRefused(self.pop3(dovecot, user), "-ERR [AUTH] ", reason)
            self.assertRefused(self.imap(dovecot, user), "a NO [CONTACTADMIN] ", reason)
        self.a.cli("unsuspend", user)
        self.on_b_and_c(user, "imap", False)
        self.on_b_and_c(user, "pop3", False)
        self.assertDovecotsLetIn(user)
        self.assertEqual(status(self.c.cli, user)["origin"], "a")

    def test_send_and_imap_suspended_on_a_refused_by_exim_and_dovecot_of_b(self):
        user, reason = "alice@example.com", "fleet spam run"
        self.a.cli("suspend", user, "--service", "send,imap", "--reason", reason)
        self.on_b_and_c(user, "send", True)
        out = self.b.send(user, ["zed@example.com"], user=user)
        self.assertEqual(out.mail[0], 550, out)
        self.assertIn(reason, out.mail[1])
        for dovecot in (self.b_dovecot, self.c):
            self.assertRefused(self.imap(dovecot, user), "a NO [CONTACTADMIN] ", reason)
        self.a.cli("unsuspend", user)
        self.on_b_and_c(user, "send", False)
        out = self.b.send(user, ["zed@example.com"], user=user)
        self.assertEqual(out.data[0], 250, out)
        self.assertDovecotsLetIn(user)

    # ---- an automatic suspension made by b's Exim -------------------------
    def cross_rate_limit_on_b(self, user):
        for n in range(RATE_LIMIT):
            out = self.b.send(user, ["zed@example.com"], user=user, subject=f"m{n}")
            self.assertEqual(out.data[0], 250, out)
        out = self.b.send(user, ["zed@example.com"], user=user, subject="crossing")
        self.assertEqual(out.data[0], 550, out)
        self.assertEqual(reply_text(out.data), "5.7.13 " + policytest.RATE_TEXT)

    def assert_rate_suspension_enforced_on_a(self, user):
        wait_until(lambda: status(self.a.cli, user)["services"]["send"]["suspended"],
                   f"node a's store to have the rate suspension of {user}")
        send = status(self.a.cli, user)["services"]["send"]
        self.assertEqual((send["source"], send["origin"]), ("rate", "b"), send)
        self.assertIn("messages_per_day", send["reason"])
        out = self.a.send(user, ["zed@example.com"], user=user)
        self.assertEqual(out.mail[0], 550, out)
        self.assertEqual(reply_text(out.mail), "5.7.13 " + policytest.RATE_TEXT)

    def test_rate_suspension_by_exim_on_b_enforced_on_a(self):
        user = "dave@example.com"
        self.cross_rate_limit_on_b(user)
        self.assertEqual(status(self.b.cli, user)["services"]["send"]["origin"], "b")
        self.assert_rate_suspension_enforced_on_a(user)
        # a's Exim extended it (limits.extend_on_attempt): b gets that back,
        # and no change is on its way when the next test starts.
        wait_until(lambda: status(self.b.cli, user) == status(self.a.cli, user), "b to agree with a")

    def test_rate_suspension_through_b_outbox_enforced_on_a(self):
        user = "erin@example.com"
        store = os.path.join(self.b.dir, "store")
        lock = eximtest.HeldLock(store)
        try:
            self.cross_rate_limit_on_b(user)
            outbox = [n for n in os.listdir(os.path.join(store, "outbox")) if not n.startswith(".")]
            self.assertEqual(len(outbox), 1, outbox)
            self.assertFalse(status(self.b.cli, user)["services"]["send"]["suspended"])
        finally:
            lock.release()
        # Nothing else is written anywhere: b's agent applies its outbox by itself.
        self.assert_rate_suspension_enforced_on_a(user)
        self.assertIn(f"from the outbox: send of {user} suspended", self.agents["b"].log_text())
        lines = [a for a in policytest.audit(self.b) if a.get("target") == user and a["action"] == "suspend"]
        self.assertEqual([a["actor"]["name"] for a in lines], ["exim (outbox)"], lines)


def main():
    global DOVECOT_ARGS
    parser = argparse.ArgumentParser()
    for option in ("--cli", "--so", "--snippets", "--modules", "--snippet"):
        parser.add_argument(option, required=True)
    args, rest = parser.parse_known_args()
    eximtest.PATHS.update(cli=args.cli, so=args.so, snippets=args.snippets)
    fleetenv.PATHS["cli"] = args.cli
    DOVECOT_ARGS = argparse.Namespace(cli=args.cli, modules=args.modules, snippet=args.snippet)
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
