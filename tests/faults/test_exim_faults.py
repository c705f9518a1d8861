#!/usr/bin/env python3
"""Store faults under a running Exim daemon (real Debian exim4, SMTP over
loopback), for one store.fail_policy:

    test_exim_faults.py --cli C --so S --snippets D --helper H --policy open|closed

For every fault in faults.py: while the store is broken, every SMTP
transaction is answered 250 or 550 per the policy (never a 4xx), the
daemon stays up with no panic log, and the module logs the outage once;
after recovery with the CLI, with the same daemon, a suspension made then
takes effect at the next message.
"""
import argparse
import re
import sys
import unittest

import faults
import eximtest
from eximtest import Env

ARGS = None
ALICE, BOB, CAROL, ZED = ("alice@example.com", "bob@example.com", "carol@example.com",
                          "zed@example.com")
MESSAGES = 2   # per kind of transaction and fault: enough to tell "once" from "per message"
UNAVAILABLE = r"mailsuspend: store unavailable \("
# Log lines carry the process id ([pid]), so the suite can check that no
# process logs one outage twice.
PID = re.compile(r"\[(\d+)\]")


def codes(out):
    """Every reply code the client saw in one transaction."""
    seen = [out.mail[0]] + [c for c, _ in out.rcpts.values()]
    if out.data:
        seen.append(out.data[0])
    return seen


class EximFaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = Env(f"faults-{ARGS.policy}", fail_policy=ARGS.policy)
        try:
            # every main log line gets the process id (the harness already sets
            # log_selector; it may be set only once)
            with open(cls.env.conf) as f:
                conf = f.read()
            with open(cls.env.conf, "w") as f:
                f.write(conf.replace("log_selector = +", "log_selector = +pid +", 1))
            cls.env.start_daemon()
        except BaseException:
            cls.env.stop()
            raise
        cls.daemon_pid = cls.env.daemon.pid
        cls.cli = faults.Cli(eximtest.PATHS["cli"], cls.env.ms_conf, cls.env.env)
        cls.log_counts = {}
        cls.log_pids = {}

    @classmethod
    def tearDownClass(cls):
        panic = cls.env.panic_log()
        cls.env.stop()
        for name, (sent, lines) in cls.log_counts.items():
            print(f"FIGURE exim {ARGS.policy} {name}: {sent} SMTP transactions, "
                  f"{lines} 'store unavailable' log line(s)", file=sys.stderr)
        if panic:
            raise AssertionError(f"Exim wrote a panic log:\n{panic}")

    # -- probes ---------------------------------------------------------
    def send_as(self, user):
        return self.env.send(user, [ZED], user=user)

    def inbound(self):
        return self.env.send("someone@remote.test", [CAROL])

    def assertNoTempReject(self, out):
        self.assertFalse([c for c in codes(out) if 400 <= c < 500], out)

    def assertServed(self, suspended_sender_code, other_sender_code):
        """MESSAGES transactions of each kind; returns how many ran."""
        for _ in range(MESSAGES):
            for user, code in ((ALICE, suspended_sender_code), (BOB, other_sender_code)):
                out = self.send_as(user)
                self.assertNoTempReject(out)
                self.assertEqual(out.mail[0], code, (user, out))
                if code == 250:
                    self.assertEqual(out.data[0], 250, out)
            out = self.inbound()
            self.assertNoTempReject(out)
            # inbound mail is accepted under both policies (closed: held in the queue)
            self.assertEqual(out.data and out.data[0], 250, out)
        return 3 * MESSAGES

    def assertDaemonUp(self):
        self.assertIsNone(self.env.daemon.poll(), "the Exim daemon died")
        self.assertEqual(self.env.daemon.pid, self.daemon_pid)
        self.assertEqual(self.env.panic_log(), "")

    # -- one fault ------------------------------------------------------
    def run_fault(self, fault):
        env = self.env
        env.cli("suspend", ALICE, "--service", "send", "--reason", "fault baseline")
        self.assertServed(550, 250)
        before = len(env.log_lines(UNAVAILABLE))
        fault.apply()
        try:
            self.check_during(fault, before)
        finally:
            fault.recover()
            faults.settle()
        self.check_recovered(fault.keeps_state)

    def check_during(self, fault, before):
        env = self.env
        faults.settle()
        closed = ARGS.policy == "closed"
        if not fault.degrades:
            still_waiting, rc, out = fault.while_applied()
            self.assertTrue(still_waiting, "a CLI change did not wait for the held lock")
            self.assertEqual(rc, 0, out)
            self.assertServed(550, 250)
            logged = env.log_lines(UNAVAILABLE)[before:]
            self.assertEqual(logged, [], "a held lock must not make the store unavailable")
        elif isinstance(fault, faults.WriterKilledMidWrite):
            # only the victim's slot is unreadable: alice per policy, bob decided normally
            sent = self.assertServed(550 if closed else 250, 250)
        else:
            # fail open: everyone may send, alice too; fail closed: nobody
            sent = self.assertServed(550 if closed else 250, 550 if closed else 250)
        if fault.degrades:
            logged = env.log_lines(UNAVAILABLE)[before:]
            self.assertTrue(logged, f"{fault.name}: the outage was not logged")
            self.assertTrue(all(("fail policy " + ARGS.policy) in l for l in logged), logged)
            self.log_counts[fault.name] = (sent, len(logged))
            self.log_pids[fault.name] = [m.group(1) for m in map(PID.search, logged) if m]
        self.assertDaemonUp()

    def check_recovered(self, keeps_state):
        """Same daemon: the old suspension is back (unless the journal went
        with the store) and a new one counts at the next message."""
        env = self.env
        self.assertServed(550 if keeps_state else 250, 250)
        env.cli("suspend", BOB, "--service", "send")
        out = self.send_as(BOB)
        self.assertEqual(out.mail[0], 550, out)
        env.cli("unsuspend", BOB, "--service", "send")
        env.cli("unsuspend", ALICE, "--service", "send")
        self.assertEqual(self.send_as(ALICE).mail[0], 250)
        self.assertDaemonUp()


def test_zz_one_log_line_per_outage(self):
    """Runs last: every outage above was logged at most once per process
    (the daemon, each SMTP connection's process, each delivery process),
    never once per lookup."""
    self.assertTrue(self.log_counts, "no fault ran")
    unattributed = {k: v for k, v in self.log_counts.items() if len(self.log_pids[k]) != v[1]}
    self.assertEqual(unattributed, {}, "log lines without a [pid]")
    twice = {k: pids for k, pids in self.log_pids.items() if len(pids) != len(set(pids))}
    self.assertEqual(twice, {}, "a process logged one outage more than once")


EximFaults.test_zz_one_log_line_per_outage = test_zz_one_log_line_per_outage


def make_test(kind):
    def test(self):
        store_dir = self.env.dir + "/store"
        fault = {f.name: f for f in faults.all_faults(
            store_dir, self.cli, ARGS.helper, self.env.ms_conf, ALICE)}[kind]
        self.run_fault(fault)
    return test


for _kind in ("deleted", "truncated-in-place", "truncated-renamed", "garbage", "newer-layout",
              "unreadable-mode", "wrong-group", "writer-killed-holding-lock",
              "writer-killed-mid-write"):
    setattr(EximFaults, "test_" + _kind.replace("-", "_"), make_test(_kind))


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    for opt in ("--cli", "--so", "--snippets", "--helper"):
        parser.add_argument(opt, required=True)
    parser.add_argument("--policy", choices=("open", "closed"), required=True)
    parser.add_argument("-k", dest="pattern")
    ARGS = parser.parse_args()
    eximtest.PATHS.update(cli=ARGS.cli, so=ARGS.so, snippets=ARGS.snippets)
    loader = unittest.TestLoader()
    loader.sortTestMethodsUsing = None
    if ARGS.pattern:
        loader.testNamePatterns = [f"*{ARGS.pattern}*"]
    suite = loader.loadTestsFromTestCase(EximFaults)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() and not result.skipped and result.testsRun else 1


if __name__ == "__main__":
    sys.exit(main())
