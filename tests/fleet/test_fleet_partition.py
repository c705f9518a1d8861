#!/usr/bin/env python3
"""Partition (issue 15): one node is cut off for a while, both sides write,
to targets of their own and to the same targets; once it is back every node
agrees, nothing the isolated node wrote is lost, and on a target both sides
changed the later change wins everywhere.

Two ways to be cut off: the agent stopped (killed, so nothing is flushed on
the way out), and the agent frozen (SIGSTOP) with its Redis connection open:
what a node behind a dead network link looks like to itself, a blocked read
that nothing answers.

test_fleet_partition.py --cli PATH
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleetenv  # noqa: E402
from fleetenv import PREFIX, suspended, wait_until  # noqa: E402

# Long enough for the other side to publish and apply several rounds.
CUT_OFF = 3.0


class PartitionTest(fleetenv.FleetCase):

    def agree(self, targets):
        for t in targets:
            views = [n.status(t) for n in self.fleet.nodes.values()]
            if any(v != views[0] for v in views):
                return False
            snap = self.fleet.redis.cli("HGET", f"{PREFIX}:state", t).split(" ")
            if len(snap) < 2 or (int(snap[0]), snap[1]) != (views[0]["stamp"], views[0]["origin"]):
                return False
        return all(n.fleet_status()["unpublished"] == 0 for n in self.fleet.nodes.values())

    def partition_round(self, tag, cut, heal):
        """cut() isolates node c, heal() brings it back; returns the targets."""
        own_c = [f"{tag}-c{i}@part.example" for i in range(5)]
        own_a = [f"{tag}-a{i}@part.example" for i in range(5)]
        c_last = f"{tag}-c-last@part.example"    # both write, c after a
        a_last = f"{tag}-a-last@part.example"    # both write, a after c
        cut()
        try:
            for t in own_c:
                self.c.cli("suspend", t, "--service", "imap", "--reason", "isolated c")
            self.a.cli("suspend", c_last, "--service", "send", "--reason", "a first")
            self.c.cli("suspend", a_last, "--service", "pop3", "--reason", "c first")
            for t in own_a:
                self.a.cli("suspend", t, "--service", "sieve", "--reason", "main side")
            wait_until(lambda: all(suspended(self.b, t, "sieve") for t in own_a), "b to get a's changes")
            time.sleep(0.01)  # the later writes get later stamps even at the clock's resolution
            self.c.cli("suspend", c_last, "--service", "receive", "--reason", "c later")
            self.a.cli("suspend", a_last, "--service", "webmail", "--reason", "a later")
            time.sleep(CUT_OFF)
            # Really cut off: nothing crossed either way.
            self.assertFalse(suspended(self.c, own_a[0], "sieve"))
            self.assertFalse(suspended(self.b, own_c[0], "imap"))
            self.assertGreaterEqual(self.c.fleet_status()["unpublished"], len(own_c) + 2)
        finally:
            heal()
        targets = own_c + own_a + [c_last, a_last]
        wait_until(lambda: self.agree(targets), "every node and the snapshot to agree after the partition")
        for node in self.fleet.nodes.values():
            for t in own_c:
                s = node.status(t)
                self.assertTrue(s["services"]["imap"]["suspended"], (node.name, t, s))
                self.assertEqual((s["origin"], s["services"]["imap"]["reason"]), ("c", "isolated c"))
            for t in own_a:
                self.assertTrue(suspended(node, t, "sieve"), (node.name, t))
            # The later change wins as a whole (last writer wins per target).
            s = node.status(c_last)
            self.assertEqual(s["origin"], "c", (node.name, s))
            self.assertTrue(s["services"]["receive"]["suspended"], s)
            self.assertFalse(s["services"]["send"]["suspended"], s)
            s = node.status(a_last)
            self.assertEqual(s["origin"], "a", (node.name, s))
            self.assertTrue(s["services"]["webmail"]["suspended"], s)
            self.assertFalse(s["services"]["pop3"]["suspended"], s)
        # And the fleet goes on as one after.
        self.b.cli("unsuspend", own_c[0])
        wait_until(lambda: not suspended(self.c, own_c[0], "imap"), "c to follow b again")

    def test_agent_stopped(self):
        self.partition_round("stopped", lambda: self.c.stop_agent(signal.SIGKILL), self.c.start_agent)

    def test_connection_hanging(self):
        self.partition_round("frozen", lambda: self.c.agent.send_signal(signal.SIGSTOP),
                             lambda: self.c.agent.send_signal(signal.SIGCONT))


if __name__ == "__main__":
    fleetenv.main()
