"""Store faults applied under running servers, shared by the Exim and
Dovecot fault suites.  The servers come from the existing harnesses
(tests/exim/eximtest.py, tests/dovecot/harness.py), imported, not copied.

A fault is a small object with apply() and recover(); recover() uses only
what an admin has: the `mailsuspend` CLI (init, check) and moving a
damaged file aside.  Nothing here restarts a server.
"""
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "exim"))
sys.path.insert(0, os.path.join(TESTS, "dovecot"))

LAYOUT_VERSION_OFFSET = 8    # store_layout.hpp: Header { u64 magic; u32 layout_version; ... }
REOPEN_INTERVAL = 1.0        # capi.cpp kReopenInterval: the C handle re-checks once a second
SETTLE = REOPEN_INTERVAL + 0.3


def settle():
    """Outlives the C handle's once-a-second re-check, so the next lookup in
    every long-lived process has seen the change."""
    time.sleep(SETTLE)


class Fault:
    name = "?"
    # False: the fault leaves the data readable (a writer holding its lock):
    # servers go on deciding from the store, the fail policy is not involved.
    degrades = True
    # False: the journal went too, recovery starts from an empty store.
    keeps_state = True

    def __init__(self, store_dir, cli, helper, config):
        self.dir = store_dir
        self.table = os.path.join(store_dir, "store")
        self.cli = cli            # callable(*argv, check=True) -> CompletedProcess
        self.helper = helper      # path of fault_writer
        self.config = config

    def apply(self):
        raise NotImplementedError

    def recover(self):
        """The damaged table goes aside, `mailsuspend init` makes a new one
        and replays the journal, `mailsuspend check` confirms it."""
        if os.path.exists(self.table):
            os.rename(self.table, self.table + ".damaged")
        self.cli("init")
        self.cli("check")

    def size(self):
        return os.path.getsize(self.table)


class Deleted(Fault):
    name = "deleted"
    keeps_state = False

    def apply(self):
        shutil.rmtree(self.dir)

    def recover(self):
        self.cli("init")
        self.cli("check")


class TruncatedInPlace(Fault):
    """truncate(2) on the live file: every process that maps it sees the
    pages past the new end disappear."""
    name = "truncated-in-place"

    def apply(self):
        os.truncate(self.table, self.size() // 2)


class TruncatedRenamed(Fault):
    """A truncated copy renamed over the store (a botched restore)."""
    name = "truncated-renamed"

    def apply(self):
        tmp = self.table + ".tmp"
        with open(self.table, "rb") as src, open(tmp, "wb") as dst:
            dst.write(src.read(self.size() // 2))
        shutil.copymode(self.table, tmp)
        os.rename(tmp, self.table)


class Garbage(Fault):
    """The whole file overwritten in place with random bytes, size kept."""
    name = "garbage"

    def apply(self):
        size = self.size()
        with open(self.table, "r+b") as f:
            f.write(os.urandom(size))
            f.flush()
            os.fsync(f.fileno())


class NewerLayout(Fault):
    """A store written by a newer mailsuspend: layout_version + 1, in place."""
    name = "newer-layout"

    def apply(self):
        with open(self.table, "r+b") as f:
            f.seek(LAYOUT_VERSION_OFFSET)
            (version,) = struct.unpack("<I", f.read(4))
            f.seek(LAYOUT_VERSION_OFFSET)
            f.write(struct.pack("<I", version + 1))


class UnreadableMode(Fault):
    """chmod 000 on the table file (root still reads it: the CLI is fine)."""
    name = "unreadable-mode"

    def apply(self):
        self.saved = stat.S_IMODE(os.stat(self.table).st_mode)
        os.chmod(self.table, 0)
        # the same file stays mapped: a new inode makes every process reopen
        self._replace_inode()

    def _replace_inode(self):
        tmp = self.table + ".tmp"
        shutil.copy2(self.table, tmp)
        os.rename(tmp, self.table)

    def recover(self):
        os.chmod(self.table, self.saved)
        self._replace_inode()
        self.cli("check")


class WrongGroup(Fault):
    """The store directory's group is not the mail processes' group, and its
    ACL entry for the write group (Exim) is gone: they cannot enter it."""
    name = "wrong-group"

    def apply(self):
        st = os.stat(self.dir)
        self.saved_gid = st.st_gid
        self.saved_acl = subprocess.run(["getfacl", "--omit-header", self.dir], check=True,
                                        capture_output=True, text=True).stdout
        os.chown(self.dir, 0, 0)
        subprocess.run(["setfacl", "--remove-all", self.dir], check=True)
        # a new inode, so processes holding the old mapping reopen (and fail)
        tmp = self.table + ".tmp"
        shutil.copy2(self.table, tmp)
        os.rename(tmp, self.table)

    def recover(self):
        os.chown(self.dir, 0, self.saved_gid)
        subprocess.run(["setfacl", "--set-file=-", self.dir], input=self.saved_acl, check=True,
                       text=True)
        self.cli("check")


class WriterKilledHoldingLock(Fault):
    """A writer takes the lock, is stopped (SIGSTOP) inside it, then
    SIGKILLed.  Readers take no lock: service goes on from the store."""
    name = "writer-killed-holding-lock"
    degrades = False

    def apply(self):
        self.proc = subprocess.Popen([self.helper, self.config, "hold"],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "locked":
            raise AssertionError(f"fault_writer hold said {line!r}")
        os.kill(self.proc.pid, signal.SIGSTOP)

    def while_applied(self):
        """A CLI change waits for the lock (never fails or corrupts); after
        the SIGKILL it goes through."""
        waiting = subprocess.Popen(self.cli_argv("suspend", "ivan@example.com",
                                                 "--service", "imap"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        still_waiting = waiting.poll() is None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc.stdout.close()
        out, err = waiting.communicate(timeout=20)
        return still_waiting, waiting.returncode, out + err

    def cli_argv(self, *argv):
        return [self.cli.path, "--config", self.config, *argv]

    def recover(self):
        self.cli("unsuspend", "ivan@example.com", "--service", "imap")
        self.cli("check")


class WriterKilledMidWrite(Fault):
    """A writer SIGKILLed inside a slot write: the store is marked dirty and
    the victim's slot keeps an odd seqlock sequence.  Readers give that key
    up after 2 ms (store unavailable for it); the next writer repairs."""
    name = "writer-killed-mid-write"

    def __init__(self, *a, victim):
        super().__init__(*a)
        self.victim = victim

    def apply(self):
        self.proc = subprocess.Popen([self.helper, self.config, "die-mid-write", self.victim],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "locked":
            raise AssertionError(f"fault_writer die-mid-write said {line!r}: "
                                 f"{self.proc.stderr.read()}")
        os.kill(self.proc.pid, signal.SIGSTOP)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()

    def recover(self):
        # any writer repairs on open; `check` is one
        self.cli("check")


class Cli:
    """The CLI as a callable bound to one config (what Fault wants)."""

    def __init__(self, path, config, env=None):
        self.path = path
        self.config = config
        self.env = env

    def __call__(self, *argv, check=True):
        res = subprocess.run([self.path, "--config", self.config, *argv], env=self.env,
                             capture_output=True, text=True, timeout=60)
        if check and res.returncode != 0:
            raise AssertionError(f"mailsuspend {' '.join(argv)} failed ({res.returncode}): "
                                 f"{res.stdout}{res.stderr}")
        return res


def all_faults(store_dir, cli, helper, config, victim):
    args = (store_dir, cli, helper, config)
    return [Deleted(*args), TruncatedInPlace(*args), TruncatedRenamed(*args), Garbage(*args),
            NewerLayout(*args), UnreadableMode(*args), WrongGroup(*args),
            WriterKilledHoldingLock(*args), WriterKilledMidWrite(*args, victim=victim)]
