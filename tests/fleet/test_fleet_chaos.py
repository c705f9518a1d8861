#!/usr/bin/env python3
"""Convergence under chaos (issue 15): five nodes write at random to a few
targets at once (so their changes collide) while their agents are killed
with SIGKILL at random and restarted (at least MIN_KILLS times), and
redis-server is restarted: twice without persistence (it comes back empty:
the agents resynchronise and publish again) and twice from an RDB file saved
a moment before (it comes back with the last writes lost: their nodes publish
them again), the second time just as the writes stop, so that the final
states are among the writes Redis lost.

At the end every node's store equals the others' and the Redis snapshot, and
every change a CLI acknowledged is in force or superseded by a later one.
The check: right after each acknowledged write, the writing node's
`status --json` names the change in force there by (stamp, origin).  That is
the write itself (origin = the writer; then it must show what was asked), or
a newer change an agent applied in between (that one supersedes it).  Last
writer wins means the final state of the target must be that change or a
newer one, and when it is that change, exactly what the writer saw.  A
write lost anywhere (not published, overwritten by an older state in a
resync, dropped with Redis's data) ends in a final stamp below it, or in
the same stamp with other content.

test_fleet_chaos.py --cli PATH
"""
import os
import random
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleetenv  # noqa: E402
from fleetenv import PREFIX, wait_until  # noqa: E402

NODES = ["a", "b", "c", "d", "e"]
# Few targets: the five writers collide on each of them many times.
TARGETS = ["t1@chaos.example", "t2@chaos.example", "t3@chaos.example", "@chaosdomain.example"]
SERVICES = ["imap", "pop3", "webmail", "send", "webmail_send", "receive", "sieve"]
MODES = ["deliver", "discard", "reject", "queue"]
MIN_KILLS = 200
CHAOS_SECONDS = 60        # at least; longer only until MIN_KILLS agents were killed
REDIS_RESTARTS = (12, 27, 42)   # seconds into the chaos: empty, from an RDB file, empty;
                                # then from an RDB file once more as the writes stop
CONVERGE = 45.0           # after the chaos: every agent back, nothing left to publish


def stamp_key(stamp, origin):
    """The fleet's order (fleet_newer): stamp, then origin."""
    return (stamp or 0, origin or "")


class Write:
    """One acknowledged write and what its node showed right after it."""

    def __init__(self, node, target, op, args, seen):
        self.node, self.target, self.op, self.args, self.seen = node, target, op, args, seen

    @property
    def key(self):
        return stamp_key(self.seen["stamp"], self.seen["origin"])

    def __repr__(self):
        return f"Write({self.node} {self.op} {self.args} -> {self.key})"


class Writer(threading.Thread):
    """Random writes on one node until stopped; keeps the acknowledged ones."""

    def __init__(self, node, stop, seed):
        super().__init__(daemon=True)
        self.node, self.stop, self.rng = node, stop, random.Random(seed)
        self.acked, self.refused, self.error = [], 0, None
        self.count = 0

    def run(self):
        try:
            while not self.stop.is_set():
                self.write_once()
                time.sleep(self.rng.uniform(0, 0.02))
        except BaseException as e:  # reported by the test
            self.error = e

    def write_once(self):
        rng, target = self.rng, self.rng.choice(TARGETS)
        self.count += 1
        services = rng.sample(SERVICES, rng.randint(1, 3))
        op = rng.choices(["suspend", "unsuspend", "set-mode"], weights=[5, 4, 1])[0]
        if op == "suspend":
            reason = f"{self.node.name}-{self.count}"
            args = ["suspend", target, "--service", ",".join(services), "--reason", reason]
            if rng.random() < 0.2:
                args.append("--lock")
        elif op == "unsuspend":
            args = ["unsuspend", target, "--service", ",".join(services)]
            if rng.random() < 0.5:
                args.append("--admin")  # else a locked suspension refuses the lift
        else:
            args = ["set-mode", target, rng.choice(MODES)]
        out = self.node.cli(*args, check=False)
        if out.returncode != 0:
            self.refused += 1  # not acknowledged (a lock): nothing to hold the fleet to
            return
        self.acked.append(Write(self.node.name, target, op, args, self.node.status(target)))


class Killer(threading.Thread):
    """SIGKILLs a random node's agent and restarts it, until stopped."""

    def __init__(self, fleet, stop, seed):
        super().__init__(daemon=True)
        self.fleet, self.stop, self.rng = fleet, stop, random.Random(seed)
        self.kills, self.error = 0, None
        self.lock = threading.Lock()  # the main thread restarts agents too

    def run(self):
        try:
            while not self.stop.is_set():
                node = self.fleet.nodes[self.rng.choice(NODES)]
                with self.lock:
                    if node.agent is not None:
                        node.stop_agent(signal.SIGKILL)
                        self.kills += 1
                    # Sometimes a moment without the agent: local writes pile up.
                    if self.rng.random() < 0.2:
                        time.sleep(self.rng.uniform(0, 0.3))
                    node.start_agent()
                time.sleep(self.rng.uniform(0.02, 0.25))
        except BaseException as e:
            self.error = e


class ChaosTest(unittest.TestCase):
    def setUp(self):
        self.fleet = fleetenv.Fleet(NODES)
        self.redis = self.fleet.redis

    def tearDown(self):
        self.fleet.stop()

    def restart_redis(self, persistent, saved=False):
        """Without persistence Redis comes back empty (a new epoch); with it,
        from an RDB file saved a moment before (saved: by the caller), so the
        writes of that moment are lost while the epoch stays."""
        rdb = os.path.join(self.redis.dir, "dump.rdb")
        if persistent and not saved:
            self.redis.cli("SAVE")
            time.sleep(0.5)  # changes published now are lost with the restart
        elif os.path.exists(rdb):
            os.unlink(rdb)
        self.redis.proc.kill()
        self.redis.proc.wait(10)
        time.sleep(0.3)
        self.redis.start()
        if not persistent and os.path.exists(rdb):
            raise AssertionError("an empty restart found an RDB file")

    def snapshot(self, target):
        out = self.redis.cli("HGET", f"{PREFIX}:state", target).strip()
        if not out:
            return None
        stamp, origin = out.split(" ")[:2]
        return stamp_key(int(stamp), origin)

    def disagreement(self):
        """None when every node and the snapshot agree on every target, else what differs."""
        for target in TARGETS:
            views = {n.name: n.status(target) for n in self.fleet.nodes.values()}
            first = views[NODES[0]]
            for name, view in views.items():
                if view != first:
                    return f"{target}: node {name} {view} != node {NODES[0]} {first}"
            snap = self.snapshot(target)
            mine = stamp_key(first["stamp"], first["origin"]) if first["origin"] else None
            if snap != mine:
                return f"{target}: Redis snapshot {snap} != nodes {mine}"
        lists = {n.name: n.cli("list", "--json").stdout for n in self.fleet.nodes.values()}
        if len(set(lists.values())) != 1:
            return f"the nodes list different suspended targets: {lists}"
        for node in self.fleet.nodes.values():
            left = node.fleet_status()["unpublished"]
            if left:
                return f"node {node.name}: {left} change(s) unpublished"
        return None

    def assert_write_shown(self, w):
        """The writer's own change in force on its node: it shows what was asked."""
        services = w.args[3].split(",") if w.op != "set-mode" else []
        for s in services:
            state = w.seen["services"][s]
            if w.op == "suspend":
                self.assertTrue(state["suspended"], (w, state))
                self.assertEqual(state["reason"], w.args[5], w)
                if "--lock" in w.args:  # without it a lock stays (only unsuspend --admin lifts it)
                    self.assertTrue(state["locked"], w)
            else:
                self.assertFalse(state["suspended"], (w, state))
        if w.op == "set-mode":
            self.assertEqual(w.seen["delivery_mode"], w.args[2], w)

    def test_convergence_under_kills_and_redis_restarts(self):
        stop = threading.Event()
        writers = [Writer(n, stop, seed=i) for i, n in enumerate(self.fleet.nodes.values())]
        killer = Killer(self.fleet, stop, seed=99)
        start = time.monotonic()
        for t in writers + [killer]:
            t.start()
        restarts = list(REDIS_RESTARTS)
        try:
            while time.monotonic() - start < CHAOS_SECONDS or killer.kills < MIN_KILLS:
                if killer.error or any(w.error for w in writers):
                    break
                if restarts and time.monotonic() - start >= restarts[0]:
                    self.restart_redis(persistent=len(restarts) == 2)
                    restarts.pop(0)
                time.sleep(0.1)
                self.assertLess(time.monotonic() - start, CHAOS_SECONDS * 2, f"only {killer.kills} kills")
            # The last one as the writes stop: Redis comes back from an RDB
            # file without the last writes, which only their nodes still have.
            self.redis.cli("SAVE")
            time.sleep(0.5)
        finally:
            stop.set()
            for t in writers + [killer]:
                t.join(30)
        self.restart_redis(persistent=True, saved=True)
        for t in writers + [killer]:
            if t.error:
                raise t.error
        self.assertGreaterEqual(killer.kills, MIN_KILLS)
        self.assertEqual(restarts, [], "Redis restarts left undone")
        acked = [w for t in writers for w in t.acked]
        print(f"\nchaos: {time.monotonic() - start:.0f} s, {len(acked)} acknowledged writes, "
              f"{sum(t.refused for t in writers)} refused, {killer.kills} agents killed, "
              f"{len(REDIS_RESTARTS) + 1} Redis restarts", file=sys.stderr)
        self.assertGreater(len(acked), 300, "too few writes to collide")

        for node in self.fleet.nodes.values():
            if node.agent is None:
                node.start_agent()
        last = [None]

        def agreed():
            last[0] = self.disagreement()
            return last[0] is None
        try:
            wait_until(agreed, "every node and the Redis snapshot to agree", timeout=CONVERGE)
        except AssertionError:
            raise AssertionError(f"no convergence: {last[0]}")
        converged_at = time.monotonic()
        print(f"chaos: converged {converged_at - start:.0f} s after the start", file=sys.stderr)

        for node in self.fleet.nodes.values():
            # Every agent went through both recoveries at least once.
            self.assertIn("Redis lost its data", node.log_text(), node.name)
            self.assertIn("has a new history", node.log_text(), node.name)
        final = {t: self.fleet.nodes["a"].status(t) for t in TARGETS}
        in_force = superseded = 0
        for w in acked:
            if w.seen["origin"] == w.node:
                self.assert_write_shown(w)
            f = final[w.target]
            fkey = stamp_key(f["stamp"], f["origin"])
            self.assertGreaterEqual(fkey, w.key, f"{w} lost: the final state is {f}")
            if fkey == w.key:
                self.assertEqual(f, w.seen, f"{w}: the change in force differs from what its writer saw")
                in_force += 1
            else:
                superseded += 1
        print(f"chaos: {in_force} acknowledged writes in force, {superseded} superseded; final origins "
              f"{[final[t]['origin'] for t in TARGETS]}", file=sys.stderr)
        # The fleet did collide: every node wrote every target, and writes were superseded.
        self.assertEqual({(w.node, w.target) for w in acked}, {(n, t) for n in NODES for t in TARGETS})
        self.assertGreater(superseded, 0)
        for node in self.fleet.nodes.values():
            node.cli("check")


if __name__ == "__main__":
    fleetenv.main()
