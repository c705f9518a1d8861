#!/usr/bin/env python3
"""The store on a full filesystem (issue 12 item 3): a 2 MB tmpfs and an
8 MB ext4 loop image, mounted by the test (root), filled up with a file.

    test_full_fs.py --cli C --so S --snippets D

A CLI change exits 1 with a clear ENOSPC message and nothing half-done
(`mailsuspend check` passes, the audit log holds whole lines only, the
change is not in the store); a writer never dies of SIGBUS.  The real Exim
keeps answering: no local_scan crash (421), suspensions made before still
refuse, other mail is accepted, a rate crossing is still refused.  Once
space is freed the same change goes through.
"""
import json
import os
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "exim"))

import eximtest  # noqa: E402
import policytest as pt  # noqa: E402
from eximtest import Env, reply_text  # noqa: E402

LIMIT = 2
# Changed from the defaults: the store, counters and audit log on the small
# filesystem (capacities that fit in 2 MB: the default counter table alone
# is 40 MB, the login pair table 1.6 MB), and a small rate limit so a crossing happens on the full disk.
STORE_CONF = """\
store: {{
  path = "{fs}/store";
  capacity = 1000;
  counter_capacity = 1000;
  login_capacity = 1000;
  fail_policy = "open";
  audit_log = "{fs}/audit.log";
}};
"""
LIMITS = f"""
limits: {{ messages_per_day = {LIMIT}; suspend_for = "1h"; }};
spam: {{ sendmail_command = "{{dir}}/notice-mta -t -oi"; }};
"""
CRASH = "crashed with signal"


def run(*argv):
    subprocess.run(argv, check=True, capture_output=True)


class FullFilesystem:
    """Mixin: subclasses say how to mount (mount_fs)."""
    name = "?"

    @classmethod
    def setUpClass(cls):
        cls.env = Env(f"full-{cls.name}", ms_extra=LIMITS, with_store=False)
        cls.fs = os.path.join(cls.env.dir, "fs")
        os.mkdir(cls.fs)
        try:
            cls.mount_fs()
            with open(cls.env.ms_conf) as f:
                text = f.read()
            start = text.index("store: {")
            end = text.index("};", start) + 3
            text = text[:start] + STORE_CONF.format(fs=cls.fs) + text[end:]
            cls.env.write_ms_conf(text)
            cls.env.cli("init")
            pt.write_notice_mta(cls.env)
            cls.env.start_daemon()
        except BaseException:
            cls.cleanup()
            raise

    @classmethod
    def cleanup(cls):
        daemon, cls.env.daemon = cls.env.daemon, None
        if daemon:
            daemon.terminate()
            daemon.wait(10)
            daemon.stdout.close()
        cls.env.wait_idle()
        subprocess.run(["umount", "-l", cls.fs], capture_output=True)
        cls.unmounted()
        cls.env.stop()

    @classmethod
    def unmounted(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        panic = cls.env.panic_log()
        cls.cleanup()
        if panic:
            raise AssertionError(f"Exim wrote a panic log:\n{panic}")

    def fill(self):
        """Writes a file until the filesystem has no block left (root's reserve too)."""
        path = os.path.join(self.fs, "fill")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for size in (65536, 4096, 512, 1):
                try:
                    while os.write(fd, b"\0" * size) > 0:
                        pass
                except OSError:
                    pass
        finally:
            os.close(fd)
        os.sync()
        return path

    def audit_lines(self):
        with open(os.path.join(self.fs, "audit.log"), "rb") as f:
            data = f.read()
        self.assertTrue(data == b"" or data.endswith(b"\n"), data[-200:])
        return [json.loads(line) for line in data.splitlines()]  # every line whole JSON

    def send(self, user, subject, source="127.0.0.41"):
        return self.env.send(user, ["zed@example.com"], user=user, source=source, subject=subject)

    def test_full_filesystem(self):
        env = self.env
        env.cli("suspend", "dave@example.com", "--service", "send", "--reason", "before the disk filled")
        before = len(self.audit_lines())
        fill = self.fill()

        # The CLI: the last free bytes of blocks already allocated (the
        # journal's, the audit log's) take a few changes; then a clear
        # error, exit 1, nothing half-done, never SIGBUS.
        stored, failed = [], None
        for n in range(200):
            res = env.cli("suspend", f"user{n}@example.com", "--service", "imap",
                          "--reason", "x" * 150, check=False)
            if res.returncode != 0:
                failed = (f"user{n}@example.com", res)
                break
            stored.append(f"user{n}@example.com")
        self.assertIsNotNone(failed, "200 changes fitted on a full filesystem?")
        target, res = failed
        self.assertEqual(res.returncode, 1, res)
        self.assertIn("No space left on device", res.stderr)
        self.assertIn("nothing changed", res.stderr)
        self.assertNotIn("Success", res.stderr)
        for again in range(3):  # and so on, every time
            res = env.cli("suspend", target, "--service", "imap", "--reason", "x" * 150, check=False)
            self.assertEqual(res.returncode, 1, res)
            self.assertIn("No space left on device", res.stderr)
        self.assertFalse(pt.status(env, target)["services"]["imap"]["suspended"])
        for t in stored:
            self.assertTrue(pt.status(env, t)["services"]["imap"]["suspended"], t)
        env.cli("check")
        audited = [a["target"] for a in self.audit_lines()[before:]]
        self.assertEqual(audited, stored)  # every stored change audited, nothing else

        # Exim keeps answering with the normal decisions.
        self.assertEqual(self.send("dave@example.com", "suspended").mail[0], 550)
        for n in range(LIMIT):
            self.assertEqual(self.send("alice@example.com", f"m{n}").data[0], 250)
        crossing = self.send("alice@example.com", "crossing")
        self.assertEqual(crossing.data[0], 550, crossing)
        self.assertEqual(reply_text(crossing.data), "5.7.13 " + pt.RATE_TEXT)
        self.assertEqual(self.send("bob@example.com", "normal").data[0], 250)
        self.assertNotIn(CRASH, env.mainlog())
        env.cli("check")
        self.audit_lines()

        # Space again: the same change goes through, audited.
        os.unlink(fill)
        env.cli("suspend", target, "--service", "imap", "--reason", "x" * 150)
        self.assertTrue(pt.status(env, target)["services"]["imap"]["suspended"])
        self.assertEqual([a["target"] for a in self.audit_lines() if a["action"] == "suspend"][-1:], [target])
        env.cli("check")


class Tmpfs(FullFilesystem, unittest.TestCase):
    name = "tmpfs"

    @classmethod
    def mount_fs(cls):
        run("mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", cls.fs)


class Ext4Loop(FullFilesystem, unittest.TestCase):
    name = "ext4"

    @classmethod
    def mount_fs(cls):
        cls.image = os.path.join(cls.env.dir, "fs.img")
        with open(cls.image, "wb") as f:
            f.truncate(8 << 20)
        run("mkfs.ext4", "-q", "-F", cls.image)
        run("mount", "-o", "loop", cls.image, cls.fs)
        os.chmod(cls.fs, 0o755)

    @classmethod
    def unmounted(cls):
        if os.path.exists(cls.image):
            os.unlink(cls.image)


if __name__ == "__main__":
    eximtest.main()
