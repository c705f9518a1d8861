"""Harness for the fleet tests (issue 15): a real redis-server on loopback
and simulated mail nodes, each a store directory, a mailsuspend.conf with a
`fleet` group and its own `mailsuspend sync` agent.

Nothing here skips: without redis-server or the built CLI a test fails.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

REDIS_PORT = 16379         # fixed: the suite runs under the shared integration lock
REDIS_PASSWORD = "fleet-test-pw"
PREFIX = "mstest"
WAIT = 20.0                # upper bound on a change reaching every node

PATHS = {"cli": None}

CONF = """\
store: {{
  path = "{dir}/store";
  capacity = 1000;
  audit_log = "{dir}/audit.log";
  read_group = "root";
  write_group = "root";
}};
delivery: {{
  flush_command = "";
  fail_queued_command = "";
}};
{fleet}"""

FLEET_GROUP = """\
fleet: {{
  redis = "127.0.0.1:{port}";
  node_id = "{node}";
  key_prefix = "{prefix}";
  password_file = "{password_file}";
  signing_key_file = "{key}";
}};
"""


def fleet_group(node, password_file, key_file, counters=None):
    """The fleet group of a node of the test fleet (fleet.counters left at its default unless given)."""
    group = FLEET_GROUP.format(port=REDIS_PORT, node=node, prefix=PREFIX, password_file=password_file,
                               key=key_file)
    if counters:
        group = group.replace("};\n", f'  counters = "{counters}";\n}};\n')
    return group


def write_password_file(path):
    """The Redis password file of a node: root-only, as the agent insists."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(REDIS_PASSWORD + "\n")
    os.chmod(path, 0o600)


def wait_until(predicate, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Redis:
    """redis-server on 127.0.0.1:REDIS_PORT, no persistence, with a password."""

    def __init__(self, root):
        self.dir = os.path.join(root, "redis")
        os.makedirs(self.dir)
        self.proc = None
        self.start()

    def start(self):
        if not shutil.which("redis-server"):
            raise AssertionError("fleet test set-up: redis-server is not installed (apt-get install redis-server)")
        with open(os.path.join(self.dir, "redis.log"), "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir, "--requirepass", REDIS_PASSWORD],
                stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.ping(), "redis-server to answer", timeout=10)

    def ping(self):
        return self.cli("PING", check=False).strip() == "PONG"

    def cli(self, *args, check=True):
        out = subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "-a", REDIS_PASSWORD, "--no-auth-warning",
                              *args], capture_output=True, text=True)
        if check and (out.returncode != 0 or out.stdout.startswith("ERR")):
            raise AssertionError(f"redis-cli {args}: {out.stdout} {out.stderr}")
        return out.stdout

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Node:
    """One mail node: its store, its config and its agent (started by start_agent)."""

    def __init__(self, root, name, key_file, fleet=None):
        """fleet: the node's fleet group (fleet_group(...) when None)."""
        self.name = name
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "mailsuspend.conf")
        write_password_file(os.path.join(self.dir, "redis.pw"))
        with open(self.conf, "w") as f:
            pw = os.path.join(self.dir, "redis.pw")
            f.write(CONF.format(dir=self.dir, fleet=fleet or fleet_group(name, pw, key_file)))
        self.log = os.path.join(self.dir, "sync.log")
        self.agent = None
        self.cli("init")

    def cli(self, *args, check=True):
        out = subprocess.run([PATHS["cli"], "--config", self.conf, *args], capture_output=True, text=True)
        if check and out.returncode != 0:
            raise AssertionError(f"{self.name}: mailsuspend {' '.join(args)} exited {out.returncode}: "
                                 f"{out.stdout}{out.stderr}")
        return out

    def status(self, target):
        return json.loads(self.cli("status", target, "--json").stdout)

    def fleet_status(self):
        return json.loads(self.cli("fleet-status", "--json").stdout)

    def start_agent(self):
        assert self.agent is None, "agent already running"
        with open(self.log, "ab") as log:
            self.agent = subprocess.Popen([PATHS["cli"], "--config", self.conf, "sync"],
                                          stdout=subprocess.DEVNULL, stderr=log)

    def stop_agent(self, sig=signal.SIGTERM):
        if self.agent is None:
            return
        self.agent.send_signal(sig)
        self.agent.wait(10)
        self.agent = None

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()


def make_key(path, data=None):
    with open(path, "wb") as f:
        f.write(data if data is not None else os.urandom(32))
    os.chmod(path, 0o600)


class Fleet:
    """A Redis and named nodes sharing one fleet key."""

    def __init__(self, names):
        self.root = tempfile.mkdtemp(prefix="ms-fleet-")
        os.chmod(self.root, 0o755)
        self.key = os.path.join(self.root, "fleet.key")
        make_key(self.key)
        self.redis = Redis(self.root)
        self.nodes = {}
        try:
            for name in names:
                self.add_node(name)
        except BaseException:
            self.stop()  # a node that cannot start must not leave Redis and agents behind
            raise

    def add_node(self, name):
        node = Node(self.root, name, self.key)
        self.nodes[name] = node
        node.start_agent()
        return node

    def stop(self):
        for node in self.nodes.values():
            try:
                node.stop_agent()
            except Exception:
                if node.agent:
                    node.agent.kill()
        self.redis.stop()
        if os.environ.get("MS_KEEP") is None:
            shutil.rmtree(self.root, ignore_errors=True)


def suspended(node, target, service):
    """Whether node's store has service of target suspended."""
    return node.status(target)["services"][service]["suspended"]


class FleetCase(unittest.TestCase):
    """Tests sharing one fleet of nodes a, b and c; a test that stopped an
    agent gets it back before the next test."""

    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet(["a", "b", "c"])
        cls.a, cls.b, cls.c = (cls.fleet.nodes[n] for n in "abc")

    @classmethod
    def tearDownClass(cls):
        cls.fleet.stop()

    def setUp(self):
        for node in self.fleet.nodes.values():
            if node.agent is None:
                node.start_agent()


def main():
    """A fleet test module's main: --cli PATH, then unittest's own arguments."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--cli", required=True)
    args, rest = parser.parse_known_args()
    PATHS["cli"] = os.path.abspath(args.cli)
    unittest.main(argv=[sys.argv[0], "-v"] + rest)
