#!/usr/bin/env python3
"""The fleet through a Redis Sentinel set (issue 15): a master, a replica and
three sentinels (real redis-server and redis-sentinel on loopback, ports
16390-16394), three nodes configured with `sentinels` + `master_name`, and
writes on every node before, during and after two failovers:

 1. SENTINEL FAILOVER while the nodes write: the agents follow the new master.
 2. The master dies (SIGKILL) holding changes it acknowledged but never
    replicated: the agents move to the promoted replica and publish those
    changes again, so no acknowledged change is lost.
 3. A server named by fleet.redis is demoted under the agent's open
    connection: the agent leaves it (ROLE) until it is master again.

At the end every node's store equals the others' and every change a CLI
acknowledged is in force or superseded by a later one.  Nothing skips: the
test fails without redis-sentinel.

test_fleet_sentinel.py --cli PATH
"""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleetenv  # noqa: E402
from fleetenv import PREFIX, REDIS_PASSWORD, wait_until  # noqa: E402

MASTER_NAME = "mstest-master"
DATA_PORTS = (16390, 16391)              # the first starts as master
SENTINEL_PORTS = (16392, 16393, 16394)   # fixed: run under the shared integration lock
PLAIN_PORTS = (16395, 16396)             # test_3: two masters without sentinels
FAILOVER_WAIT = 60.0

SENTINEL_CONF = """\
port {port}
bind 127.0.0.1
dir {dir}
sentinel monitor {name} 127.0.0.1 {master} 2
sentinel auth-pass {name} {password}
requirepass {password}
sentinel down-after-milliseconds {name} 1000
sentinel failover-timeout {name} 4000
sentinel parallel-syncs {name} 1
"""

ACKED = "acked"                          # the reason of the changes the killed master held
ACKED_HEX = ACKED.encode().hex()         # as it shows in a change's record blob

SENTINEL_FLEET_GROUP = """\
fleet: {{
  sentinels = [ {sentinels} ];
  master_name = "{name}";
  node_id = "{node}";
  key_prefix = "{prefix}";
  password_file = "{password_file}";
  signing_key_file = "{key}";
}};
"""


def redis_cli(port, *args, password=REDIS_PASSWORD):
    auth = ["-a", password, "--no-auth-warning"] if password else []
    out = subprocess.run(["redis-cli", "-p", str(port), *auth, *args], capture_output=True, text=True, timeout=10)
    return out.stdout.strip()


class Servers:
    """The two data servers and the three sentinels, each a process."""

    def __init__(self, root):
        for tool in ("redis-server", "redis-sentinel"):
            if not shutil.which(tool):
                raise AssertionError(f"sentinel test set-up: {tool} is not installed (apt-get install {tool})")
        self.root = root
        self.procs = {}
        for port in DATA_PORTS:
            replica = [] if port == DATA_PORTS[0] else ["--replicaof", "127.0.0.1", str(DATA_PORTS[0])]
            self.spawn(port, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--requirepass", REDIS_PASSWORD, "--masterauth", REDIS_PASSWORD,
                              *replica])
        wait_until(lambda: "master_link_status:up" in redis_cli(DATA_PORTS[1], "INFO", "replication"),
                   "the replica to sync", timeout=20)
        for port in SENTINEL_PORTS:
            conf = os.path.join(self.dir(port), "sentinel.conf")
            with open(conf, "w") as f:
                f.write(SENTINEL_CONF.format(port=port, dir=self.dir(port), name=MASTER_NAME,
                                             master=DATA_PORTS[0], password=REDIS_PASSWORD))
            self.spawn(port, ["redis-sentinel", conf])
        wait_until(self.sentinels_ready, "the sentinels to see each other and the replica", timeout=30)

    def dir(self, port):
        path = os.path.join(self.root, f"redis-{port}")
        os.makedirs(path, exist_ok=True)
        return path

    def spawn(self, port, argv):
        with open(os.path.join(self.dir(port), "log"), "ab") as log:
            self.procs[port] = subprocess.Popen(argv, cwd=self.dir(port), stdout=log, stderr=subprocess.STDOUT)

    def sentinel(self, *args, port=SENTINEL_PORTS[0]):
        return redis_cli(port, "SENTINEL", *args)  # the sentinels have requirepass too

    def sentinels_ready(self):
        for port in SENTINEL_PORTS:
            if not self.sentinel("ckquorum", MASTER_NAME, port=port).startswith("OK 3 usable"):
                return False
            if "slave" not in redis_cli(port, "SENTINEL", "replicas", MASTER_NAME):
                return False
        return True

    def master_port(self):
        """The master every sentinel names, once they agree and it says so itself."""
        ports = {self.sentinel("get-master-addr-by-name", MASTER_NAME, port=p).split("\n")[-1]
                 for p in SENTINEL_PORTS}
        if len(ports) != 1 or not ports.pop().isdigit():
            return None
        port = int(self.sentinel("get-master-addr-by-name", MASTER_NAME).split("\n")[-1])
        return port if redis_cli(port, "ROLE").startswith("master") else None

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                proc.wait(10)


class Writer(threading.Thread):
    """Writes to its node's own targets until stopped, recording what each
    acknowledged CLI call (exit 0) left in force: suspended with a reason, or
    lifted.  Each target is changed again and again: every change but the
    last is superseded."""

    def __init__(self, node, targets=4):
        super().__init__(daemon=True)
        self.node = node
        self.targets = [f"{node.name}-w{i}@example.com" for i in range(targets)]
        self.expected = {}
        self.acknowledged = 0
        self.stopping = threading.Event()

    def write(self, target, n):
        if n % 3 == 2:
            out = self.node.cli("unsuspend", target, check=False)
            state = None
        else:
            out = self.node.cli("suspend", target, "--service", "imap", "--reason", f"r{n}", check=False)
            state = f"r{n}"
        if out.returncode == 0:
            self.expected[target] = state
            self.acknowledged += 1

    def run(self):
        n = 0
        while not self.stopping.is_set():
            self.write(self.targets[n % len(self.targets)], n)
            n += 1
            time.sleep(0.02)

    def stop(self):
        self.stopping.set()
        self.join(30)


def in_force(node, target):
    imap = node.status(target)["services"]["imap"]
    return imap.get("reason") if imap["suspended"] else None


class SentinelFailoverTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = fleetenv.tempfile.mkdtemp(prefix="ms-sentinel-")
        os.chmod(cls.root, 0o755)
        cls.key = os.path.join(cls.root, "fleet.key")
        fleetenv.make_key(cls.key)
        cls.servers = Servers(cls.root)
        cls.nodes = [cls.make_node(name) for name in "abc"]
        for node in cls.nodes:
            node.start_agent()

    @classmethod
    def make_node(cls, name):
        sentinels = ", ".join(f'"127.0.0.1:{p}"' for p in SENTINEL_PORTS)
        group = SENTINEL_FLEET_GROUP.format(sentinels=sentinels, name=MASTER_NAME, node=name, prefix=PREFIX,
                                           password_file=os.path.join(cls.root, name, "redis.pw"), key=cls.key)
        return fleetenv.Node(cls.root, name, cls.key, fleet=group)

    @classmethod
    def tearDownClass(cls):
        for node in cls.nodes:
            try:
                node.stop_agent()
            except Exception:
                node.agent.kill()
        cls.servers.stop()
        if os.environ.get("MS_KEEP") is None:
            shutil.rmtree(cls.root, ignore_errors=True)

    def wait_for_failover(self, old):
        """The new master's port, once every sentinel names it and it says it is master."""
        found = []

        def moved():
            port = self.servers.master_port()
            if port not in (None, old):
                found.append(port)
            return bool(found)
        wait_until(moved, f"the sentinels to promote a new master (old: {old})", timeout=FAILOVER_WAIT)
        return found[0]

    def log_marks(self):
        return {node.name: len(node.log_text()) for node in self.nodes}

    def assert_agents_follow(self, port, marks):
        """Each agent logged a connection to port after its mark in the log."""
        address = f"127.0.0.1:{port}"
        for node in self.nodes:
            wait_until(lambda: f"connected to Redis at {address}" in node.log_text()[marks[node.name]:],
                       f"{node.name}'s agent to connect to the new master {address}", timeout=FAILOVER_WAIT)
            self.assertEqual(node.fleet_status()["redis"]["address"], address)

    def assert_converged(self, writers):
        targets = [t for w in writers for t in w.targets]

        def same():
            lists = [n.cli("list", "--json").stdout for n in self.nodes]
            if any(lst != lists[0] for lst in lists):
                return False
            return all(all(n.status(t) == self.nodes[0].status(t) for n in self.nodes[1:]) for t in targets)
        wait_until(same, "every node's store to equal the others'", timeout=FAILOVER_WAIT)
        for w in writers:
            for target, state in w.expected.items():
                for node in self.nodes:
                    self.assertEqual(in_force(node, target), state, f"{target} on {node.name}")
        for node in self.nodes:
            wait_until(lambda: node.fleet_status()["unpublished"] == 0, f"{node.name} to publish everything")

    def test_1_sentinel_failover_during_writes(self):
        old = self.servers.master_port()
        self.assertEqual(old, DATA_PORTS[0])
        self.assert_agents_follow(old, dict.fromkeys("abc", 0))
        writers = [Writer(node) for node in self.nodes]
        for w in writers:
            w.start()
        time.sleep(1)  # before
        marks = self.log_marks()
        self.assertEqual(self.servers.sentinel("failover", MASTER_NAME), "OK")
        new = self.wait_for_failover(old)
        self.assert_agents_follow(new, marks)  # during: the writers go on meanwhile
        time.sleep(1)  # after
        for w in writers:
            w.stop()
        self.assertTrue(all(w.acknowledged > 10 for w in writers), [w.acknowledged for w in writers])
        self.assert_converged(writers)

    def test_2_master_killed_with_unreplicated_changes(self):
        master = self.servers.master_port()
        replica = next(p for p in DATA_PORTS if p != master)
        wait_until(lambda: "master_link_status:up" in redis_cli(replica, "INFO", "replication"),
                   "the old master to replicate the new one", timeout=FAILOVER_WAIT)
        self.assert_agents_follow(master, dict.fromkeys("abc", 0))
        # Cut replication: the replica stopped and its link dropped, the
        # master keeps acknowledging what the nodes publish.
        self.servers.procs[replica].send_signal(signal.SIGSTOP)
        redis_cli(master, "CLIENT", "KILL", "TYPE", "replica")
        lost = {}
        for node in self.nodes:
            target = f"{node.name}-lost@example.com"
            node.cli("suspend", target, "--service", "imap", "--reason", ACKED)
            lost[target] = node
        for node in self.nodes:
            wait_until(lambda: node.fleet_status()["unpublished"] == 0, f"{node.name} to publish to the master")
        for target in lost:
            self.assertIn(ACKED_HEX, redis_cli(master, "HGET", f"{PREFIX}:state", target))
        marks = self.log_marks()
        self.servers.procs[master].kill()
        self.servers.procs[master].wait(10)
        self.servers.procs[replica].send_signal(signal.SIGCONT)
        new = self.wait_for_failover(master)
        self.assertEqual(new, replica)
        writers = [Writer(node) for node in self.nodes]
        for w in writers:
            w.start()
        self.assert_agents_follow(new, marks)
        time.sleep(1)
        for w in writers:
            w.stop()
        self.assert_converged(writers)
        for target in lost:
            for node in self.nodes:
                self.assertEqual(in_force(node, target), ACKED, f"{target} on {node.name}")
            self.assertIn(ACKED_HEX, redis_cli(new, "HGET", f"{PREFIX}:state", target))
        for node in self.nodes:
            self.assertIn("has a new history", node.log_text()[marks[node.name]:])

    def test_3_a_demoted_server_is_left_for_the_master(self):
        # fleet.redis names one server: demoted with REPLICAOF (no sentinel,
        # the agent's connection stays open), the agent gets READONLY or
        # UNBLOCKED, reconnects, and ROLE keeps it off until it is master again.
        server, other = PLAIN_PORTS
        for port in PLAIN_PORTS:
            self.servers.spawn(port, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--requirepass", REDIS_PASSWORD,
                                      "--masterauth", REDIS_PASSWORD])
            wait_until(lambda: redis_cli(port, "PING") == "PONG", f"redis-server on {port}")
        group = fleetenv.fleet_group("d", os.path.join(self.root, "d", "redis.pw"), self.key)
        d = fleetenv.Node(self.root, "d", self.key, fleet=group.replace(str(fleetenv.REDIS_PORT), str(server)))
        d.start_agent()
        try:
            d.cli("suspend", "d-before@example.com", "--service", "imap")
            wait_until(lambda: redis_cli(server, "HEXISTS", f"{PREFIX}:state", "d-before@example.com") == "1",
                       "d to publish")
            redis_cli(server, "REPLICAOF", "127.0.0.1", str(other))  # takes the other's empty data set
            wait_until(lambda: "is not the master (ROLE: slave)" in d.log_text(), "d to leave the demoted server")
            d.cli("suspend", "d-during@example.com", "--service", "imap")
            redis_cli(server, "REPLICAOF", "NO", "ONE")
            for target in ("d-before@example.com", "d-during@example.com"):
                wait_until(lambda: redis_cli(server, "HEXISTS", f"{PREFIX}:state", target) == "1",
                           f"d to publish {target} to the server, master again")
        finally:
            d.stop_agent()


if __name__ == "__main__":
    fleetenv.main()
