#!/usr/bin/env python3
"""Bulk changes through the fleet (issue 15): a `mailsuspend batch` of more
targets than the agent sends in one pipeline (1000) or applies in one store
transaction (500 stream entries, 5000 snapshot keys) reaches every node, and
a fresh node resynchronises all of them from the snapshot.

test_fleet_bulk.py --cli PATH
"""
import json
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleetenv  # noqa: E402
from fleetenv import PREFIX, wait_until  # noqa: E402

TARGETS = 6000  # past one pipeline (1000), one stream batch (500) and one resync batch (5000)
STREAM_LENGTH = 1000  # the smallest fleet.stream_length


def suspended_count(node):
    return len(json.loads(node.cli("list", "--json").stdout))


class FleetBulkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # The harness sizes stores for 1000 targets; these hold TARGETS.
        fleetenv.CONF = re.sub(r"capacity = \d+;", f"capacity = {2 * TARGETS};", fleetenv.CONF)
        # The stream trimmed to its smallest length (default 100000), so that
        # the fresh node's resync is from a snapshot longer than the stream.
        fleetenv.FLEET_GROUP = fleetenv.FLEET_GROUP.replace("}};", f"  stream_length = {STREAM_LENGTH};\n}}}};")
        cls.fleet = fleetenv.Fleet(["a", "b"])

    @classmethod
    def tearDownClass(cls):
        cls.fleet.stop()

    def test_a_bulk_batch_reaches_every_node_and_a_fresh_one_resyncs_it(self):
        a, b = self.fleet.nodes["a"], self.fleet.nodes["b"]
        lines = "".join(json.dumps({"op": "suspend", "target": f"bulk{i}@example.com", "services": ["imap"]}) + "\n"
                        for i in range(TARGETS))
        out = subprocess.run([fleetenv.PATHS["cli"], "--config", a.conf, "batch"], input=lines, capture_output=True,
                             text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        wait_until(lambda: int(self.fleet.redis.cli("HLEN", f"{PREFIX}:state")) == TARGETS, "the publish", timeout=60)
        # MAXLEN ~ trims whole nodes of the stream: a little over the length, far below TARGETS.
        self.assertLess(int(self.fleet.redis.cli("XLEN", f"{PREFIX}:changes")), 2 * STREAM_LENGTH)
        wait_until(lambda: suspended_count(b) == TARGETS, "node b to apply every change", timeout=60)
        # One stream batch is one store transaction: its audit lines share a
        # seq (one transaction per change would give TARGETS of them).
        with open(os.path.join(b.dir, "audit.log")) as f:
            seqs = {json.loads(line)["seq"] for line in f if '"fleet-apply"' in line}
        self.assertLessEqual(len(seqs), TARGETS // 10)
        fresh = self.fleet.add_node("fresh")
        wait_until(lambda: f"resynchronised {TARGETS} target(s)" in fresh.log_text(), "the fresh node's resync",
                   timeout=60)
        self.assertEqual(suspended_count(fresh), TARGETS)
        self.assertEqual(fresh.status(f"bulk{TARGETS - 1}@example.com")["origin"], "a")


if __name__ == "__main__":
    fleetenv.main()
