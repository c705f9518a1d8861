#!/usr/bin/env python3
"""A suspension written on one node is enforced by the real Exim of another
(issue 15): node a is a store and its agent; node b is a throw-away Exim
(tests/exim/eximtest.py) whose mailsuspend.conf has a fleet group, with its
own agent.

test_fleet_exim.py --cli PATH --so PATH --snippets DIR
"""
import json
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "exim"))
import eximtest  # noqa: E402
import fleetenv  # noqa: E402
from fleetenv import wait_until  # noqa: E402

class FleetExim(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # A set-up that fails half-way stops what it started: a Redis and an
        # agent left running would take the next fleet test's port and data.
        cls.agent = cls.env = None
        cls.fleet = fleetenv.Fleet(["a"])
        try:
            cls.a = cls.fleet.nodes["a"]
            pw = os.path.join(cls.fleet.root, "redis.pw")
            fleetenv.write_password_file(pw)
            cls.env = eximtest.Env("fleet", ms_extra="\n" + fleetenv.fleet_group("b", pw, cls.fleet.key))
            cls.env.start_daemon()
            cls.log = os.path.join(cls.env.dir, "sync.log")
            with open(cls.log, "ab") as log:
                cls.agent = subprocess.Popen([eximtest.PATHS["cli"], "--config", cls.env.ms_conf, "sync"],
                                             stdout=subprocess.DEVNULL, stderr=log)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.agent:
            cls.agent.terminate()
            cls.agent.wait(10)
        if cls.env:
            cls.env.stop()
        cls.fleet.stop()

    def b_status(self, target):
        return json.loads(self.env.cli("status", target, "--json").stdout)

    def test_send_suspended_on_a_is_refused_by_exim_on_b(self):
        self.a.cli("suspend", "alice@example.com", "--service", "send", "--reason", "fleet spam run")
        wait_until(lambda: self.b_status("alice@example.com")["services"]["send"]["suspended"],
                   "node b's store to have alice's suspension")
        out = self.env.send("alice@example.com", ["zed@example.com"], user="alice@example.com")
        self.assertEqual(out.mail[0], 550, out.mail)
        self.assertIn("fleet spam run", out.mail[1])
        self.assertEqual(self.b_status("alice@example.com")["origin"], "a")

    def test_receive_rejected_on_a_is_enforced_by_exim_on_b(self):
        self.a.cli("suspend", "bob@example.com", "--service", "receive", "--mode", "reject")
        wait_until(lambda: self.b_status("bob@example.com")["services"]["receive"]["suspended"],
                   "node b's store to have bob's suspension")
        out = self.env.send("carol@example.com", ["bob@example.com"])
        self.assertEqual(out.rcpts["bob@example.com"][0], 550, out.rcpts)


def main():
    fleetenv.PATHS = eximtest.PATHS  # one --cli for both harnesses
    eximtest.main()


if __name__ == "__main__":
    main()
