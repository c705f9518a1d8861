#!/usr/bin/env python3
"""The fleet through Redis (issue 15), first slice: three simulated nodes
(store directories, configs, `mailsuspend sync` agents) and a real
redis-server on loopback.

test_fleet.py --cli PATH
"""
import hashlib
import hmac
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleetenv  # noqa: E402
from fleetenv import PREFIX, suspended, wait_until  # noqa: E402


class FleetTest(fleetenv.FleetCase):

    def converged(self, target, nodes=None):
        states = [n.status(target) for n in (nodes or self.fleet.nodes.values())]
        return all(s == states[0] for s in states)

    def test_a_suspension_on_one_node_reaches_the_others(self):
        self.a.cli("suspend", "spread@example.com", "--service", "imap,send", "--reason", "unpaid")
        for node in (self.b, self.c):
            wait_until(lambda: suspended(node, "spread@example.com", "imap"), f"node {node.name} to suspend imap")
            s = node.status("spread@example.com")
            self.assertEqual(s["origin"], "a")
            self.assertEqual(s["services"]["send"]["reason"], "unpaid")
            self.assertEqual(s["services"]["imap"]["origin"], "a")
        # A lift travels too, and is applied by the agent as actor fleet:a.
        self.a.cli("unsuspend", "spread@example.com")
        for node in (self.b, self.c):
            wait_until(lambda: not suspended(node, "spread@example.com", "imap"), f"node {node.name} to lift")
        with open(os.path.join(self.b.dir, "audit.log")) as f:
            self.assertIn('"name":"fleet:a"', f.read())
        self.assertTrue(self.converged("spread@example.com"))

    def test_concurrent_changes_to_one_target_converge(self):
        # Both nodes write while cut off from each other; the later stamp wins everywhere.
        self.a.stop_agent()
        self.b.stop_agent()
        self.a.cli("suspend", "both@example.com", "--service", "send", "--reason", "from a")
        time.sleep(0.01)
        self.b.cli("suspend", "both@example.com", "--service", "imap", "--reason", "from b")
        self.a.start_agent()
        self.b.start_agent()
        wait_until(lambda: self.converged("both@example.com"), "every node to agree on both@example.com")
        s = self.c.status("both@example.com")
        self.assertEqual(s["origin"], "b")
        self.assertTrue(s["services"]["imap"]["suspended"])
        self.assertFalse(s["services"]["send"]["suspended"])
        snapshot = self.fleet.redis.cli("HGET", f"{PREFIX}:state", "both@example.com")
        self.assertEqual(snapshot.split(" ")[1], "b")

    def test_a_change_written_while_the_agent_was_stopped_is_published_after(self):
        self.a.stop_agent()
        self.a.cli("suspend", "offline@example.com", "--service", "pop3")
        self.assertEqual(self.a.fleet_status()["unpublished"], 1)
        time.sleep(1)
        self.assertFalse(suspended(self.b, "offline@example.com", "pop3"))
        self.a.start_agent()
        wait_until(lambda: suspended(self.b, "offline@example.com", "pop3"), "b to get the change")
        wait_until(lambda: self.a.fleet_status()["unpublished"] == 0, "a to count it published")

    def test_an_agent_killed_and_restarted_loses_and_duplicates_nothing(self):
        targets = [f"kill{i}@example.com" for i in range(30)]
        for i, t in enumerate(targets):
            self.a.cli("suspend", t, "--service", "imap", "--reason", f"r{i}")
            if i % 5 == 4:
                self.a.stop_agent(signal.SIGKILL)
                self.b.stop_agent(signal.SIGKILL)
                self.a.start_agent()
                self.b.start_agent()
        for t in targets:
            wait_until(lambda: suspended(self.b, t, "imap") and suspended(self.c, t, "imap"), f"{t} everywhere")
        # Each change is in the stream once: a republished one is not newer than the snapshot's.
        entries = self.fleet.redis.cli("XRANGE", f"{PREFIX}:changes", "-", "+").split("\n")
        for t in targets:
            self.assertEqual(sum(1 for line in entries if line == t), 1, t)

    def forge(self, target, change):
        self.fleet.redis.cli("XADD", f"{PREFIX}:changes", "*", "target", target, "change", change)

    def test_forged_changes_are_refused_and_logged(self):
        self.a.cli("suspend", "victim@example.com", "--service", "all", "--reason", "abuse")
        wait_until(lambda: suspended(self.b, "victim@example.com", "imap"), "b to suspend the victim")
        real = self.fleet.redis.cli("HGET", f"{PREFIX}:state", "victim@example.com").strip()
        stamp, origin, blob, _mac = real.split(" ")
        # A later stamp on the real record, signed with another key; then no signature at all.
        later = f"{int(stamp) + (1 << 40):020d}"
        text = f"{later} {origin} {blob}"
        wrong = hmac.new(os.urandom(32), text.encode(), hashlib.sha256).hexdigest()
        self.forge("victim@example.com", f"{text} {wrong}")
        self.forge("victim@example.com", "unsigned")
        for node in (self.b, self.c):
            wait_until(lambda: node.log_text().count("refused change") >= 2, f"{node.name} to log the refusals")
            self.assertIn("bad signature", node.log_text())
            self.assertTrue(suspended(node, "victim@example.com", "imap"))

    def test_a_new_node_and_a_trimmed_position_resync_from_the_snapshot(self):
        self.a.cli("suspend", "@old.example", "--service", "receive", "--mode", "reject")
        wait_until(lambda: suspended(self.c, "@old.example", "receive"), "c to get the domain")
        # c misses changes that are then trimmed from the stream.
        self.c.stop_agent()
        self.a.cli("suspend", "trimmed@example.com", "--service", "sieve")
        wait_until(lambda: suspended(self.b, "trimmed@example.com", "sieve"), "b to get it")
        self.fleet.redis.cli("XTRIM", f"{PREFIX}:changes", "MAXLEN", "0")
        self.c.start_agent()
        wait_until(lambda: suspended(self.c, "trimmed@example.com", "sieve"), "c to resync")
        self.assertIn("was trimmed", self.c.log_text())
        # A node that never synchronised takes the snapshot, then follows the stream.
        d = self.fleet.add_node("d")
        wait_until(lambda: suspended(d, "@old.example", "receive"), "d to resync")
        self.assertEqual(d.status("@old.example"), self.a.status("@old.example"))
        self.a.cli("suspend", "after@example.com", "--service", "imap")
        wait_until(lambda: suspended(d, "after@example.com", "imap"), "d to follow the stream")
        self.assertIn("new node", d.log_text())

    def test_fleet_status_shows_position_lag_and_nodes(self):
        self.a.cli("suspend", "seen@example.com", "--service", "imap")
        wait_until(lambda: suspended(self.b, "seen@example.com", "imap"), "b to get it")
        wait_until(lambda: self.b.fleet_status().get("lag_changes") == 0, "b to have no lag")
        s = self.b.fleet_status()
        self.assertEqual(s["node"], "b")
        self.assertTrue(s["redis"]["reachable"])
        self.assertIsNotNone(s["position"])
        self.assertEqual(s["lag_seconds"], 0)
        seen = {n["node"]: n for n in s["nodes"]}
        self.assertTrue({"a", "b", "c"} <= set(seen), seen)
        self.assertLess(seen["a"]["heartbeat_age"], 10)
        text = self.b.cli("fleet-status").stdout
        self.assertIn("node seen a", text)

    def test_local_writes_go_on_while_redis_is_away(self):
        self.fleet.redis.stop()
        try:
            self.a.cli("suspend", "away@example.com", "--service", "send")
            self.assertTrue(suspended(self.a, "away@example.com", "send"))
            out = self.a.cli("fleet-status", check=False)
            self.assertEqual(out.returncode, 1)
            self.assertIn("redis unreachable", out.stdout)
        finally:
            self.fleet.redis.start()
        # The restarted Redis is empty: the agents notice the stream went back,
        # resynchronise, and publish their own changes again.
        wait_until(lambda: suspended(self.b, "away@example.com", "send"), "b to get it after Redis came back")


if __name__ == "__main__":
    fleetenv.main()
