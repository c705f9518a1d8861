#!/usr/bin/env python3
"""Fleet-wide rate limits (issue 15, fleet.counters = "fleet"): three nodes,
each a real Exim (tests/exim/eximtest.py) with its own store and agent, one
Redis.  A sender who spreads messages over the three is suspended at the
fleet-wide limit, within the overshoot the README states (what the other
nodes accepted in the ~2 s an exchange takes); a count forged straight into
Redis is refused.

test_fleet_counters.py --cli PATH --so PATH --snippets DIR
"""
import json
import os
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "exim"))
import eximtest  # noqa: E402
import fleetenv  # noqa: E402
from fleetenv import wait_until  # noqa: E402

# A low limit so that the test sends few messages (default: 0, no limit).
LIMIT = 24
EXCHANGE_S = 2.5   # a count reaches the other nodes within this (two exchanges of ~1 s, and slack)
PACE_S = 0.25      # between two messages of the spreading sender
NODES = ("b", "c", "d")


class FleetCounters(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fleet = fleetenv.Fleet([])
        pw = os.path.join(cls.fleet.root, "redis.pw")
        fleetenv.write_password_file(pw)
        cls.envs, cls.agents = {}, {}
        try:
            for name in NODES:
                extra = ("\n" + fleetenv.fleet_group(name, pw, cls.fleet.key, counters="fleet") +
                         f"limits: {{ messages_per_day = {LIMIT}; }};\n")
                env = eximtest.Env(f"fleet-{name}", ms_extra=extra)
                cls.envs[name] = env
                env.start_daemon()
                with open(os.path.join(env.dir, "sync.log"), "ab") as log:
                    cls.agents[name] = subprocess.Popen([eximtest.PATHS["cli"], "--config", env.ms_conf, "sync"],
                                                        stdout=subprocess.DEVNULL, stderr=log)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for agent in cls.agents.values():
            agent.terminate()
            agent.wait(10)
        for env in cls.envs.values():
            env.stop()
        cls.fleet.stop()

    def sync_log(self, name):
        with open(os.path.join(self.envs[name].dir, "sync.log"), errors="replace") as f:
            return f.read()

    def send_state(self, name, who):
        out = self.envs[name].cli("status", who, "--json")
        return json.loads(out.stdout)["services"]["send"]

    def send(self, name, who, subject):
        return self.envs[name].send(who, ["zed@example.com"], user=who, subject=subject)

    def test_1_a_sender_spread_over_three_nodes_meets_the_fleet_limit(self):
        who = "spread@example.com"
        for name in NODES:
            self.assertTrue(os.path.exists(os.path.join(self.envs[name].dir, "store", "count-log")),
                            f"init made no count log on {name}")
            status = json.loads(self.envs[name].cli("fleet-status", "--json").stdout)
            self.assertEqual(status["counters"], "fleet")
        accepted, refused_at = [], None
        for n in range(3 * LIMIT):  # a node alone would take LIMIT each: 3x in all
            name = NODES[n % 3]
            out = self.send(name, who, f"spread-{n}")
            if out.data and out.data[0] == 250:
                accepted.append(time.monotonic())
            elif out.mail[0] == 550 or (out.data and out.data[0] == 550):
                refused_at = time.monotonic()
                break
            else:
                self.fail(f"unexpected reply on {name}: {out}")
            time.sleep(PACE_S)
        self.assertIsNotNone(refused_at, f"never refused after {len(accepted)} messages over three nodes")
        recent = sum(1 for t in accepted if t > refused_at - EXCHANGE_S)
        print(f"\n{len(accepted)} accepted over three nodes (limit {LIMIT}, {recent} in the last {EXCHANGE_S} s)",
              file=sys.stderr)
        self.assertGreaterEqual(len(accepted), LIMIT, "refused before the fleet reached its limit")
        self.assertLessEqual(len(accepted), LIMIT + recent,
                             f"{len(accepted)} accepted: more than the limit plus the last {EXCHANGE_S} s")
        # The node that crossed suspended send; the suspension reaches every node.
        for name in NODES:
            wait_until(lambda: self.send_state(name, who)["suspended"], f"{name} to have the rate suspension")
            self.assertEqual(self.send_state(name, who)["source"], "rate")
        for name in NODES:
            out = self.send(name, who, "after")
            self.assertEqual(out.mail[0], 550, f"{name} let the suspended sender through: {out}")

    def test_2_a_count_forged_into_redis_is_refused(self):
        who = "quiet@example.com"
        hash_key = f"{fleetenv.PREFIX}:count:0:{who}"
        hour = int(time.time()) // 3600
        self.fleet.redis.cli("HSET", hash_key, "mallory", f"{hour}:{10 * LIMIT} " + "00" * 32)
        self.fleet.redis.cli("XADD", f"{fleetenv.PREFIX}:counted", "*", "node", "mallory", "keys", f"0 {who}\n")
        for name in NODES:
            wait_until(lambda: "refused the count of node 'mallory'" in self.sync_log(name),
                       f"{name}'s agent to refuse the forged count")
        out = self.send("b", who, "still fine")
        self.assertEqual(out.data[0], 250, f"a forged count suspended {who}: {out}")
        self.assertFalse(self.send_state("b", who)["suspended"])


def main():
    fleetenv.PATHS = eximtest.PATHS  # one --cli for both harnesses
    eximtest.main()


if __name__ == "__main__":
    main()
