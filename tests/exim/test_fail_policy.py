#!/usr/bin/env python3
"""When the module cannot decide: store missing under fail_policy open and
closed, and a corrupt mailsuspend.conf.  Exim must keep running, never
temp-reject everything or write a panic, and say why once in its main log."""
import os
import re
import time

import eximtest
from eximtest import EximTestCase, reply_text


def subjects(env, address):
    return re.findall(r"^Subject: (.*)$", "\n".join(env.mailbox(address)), re.M)


class StoreMissingOpenTest(EximTestCase):
    env_options = {"with_store": False, "fail_policy": "open"}

    def test_mail_flows_and_the_reason_is_logged(self):
        env = self.env
        out = env.send("alice@example.com", ["zed@example.com"], user="alice@example.com",
                       subject="open-send")
        self.assertEqual(out.mail[0], 250, out)
        env.wait_done(out.message_id)
        self.assertEqual(subjects(env, "zed@example.com"), ["open-send"])
        lines = env.log_lines(r"mailsuspend: store unavailable \(.*\); fail policy open: allowing")
        self.assertTrue(lines)
        # Local submissions too.
        proc = env.sendmail("alice@example.com", ["zed@example.com"], subject="open-sendmail")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("open-sendmail", subjects(env, "zed@example.com"))


class StoreMissingClosedTest(EximTestCase):
    env_options = {"with_store": False, "fail_policy": "closed"}

    def test_sending_refused_receiving_held_until_the_store_is_back(self):
        env = self.env
        out = env.send("alice@example.com", ["zed@example.com"], user="alice@example.com")
        self.assertEqual(out.mail[0], 550, out)
        self.assertTrue(reply_text(out.mail).startswith("5.7.13 "), out.mail)
        self.assertTrue(env.log_lines(r"send refused sender=alice@example.com .*fail_policy=closed"))
        # Inbound mail is accepted and held, never lost.
        out = env.send("outside@remote.test", ["zed@example.com"], subject="closed-held")
        self.assertEqual(out.data[0], 250, out)
        env.wait_done(out.message_id)
        self.assertEqual(subjects(env, "zed@example.com"), [])
        self.assertIn(out.message_id, env.queue())
        self.assertTrue(env.log_lines(
            rf"{re.escape(out.message_id)} mailsuspend: queue recipient=zed@example.com .*fail_policy=closed"))
        self.assertTrue(env.log_lines(r"fail policy closed: refusing"))
        # The store appears: the next delivery attempt delivers.
        env.cli("init")
        time.sleep(1.1)  # the core retries opening at most once a second
        env.exim("-qff")
        self.assertEqual(subjects(env, "zed@example.com"), ["closed-held"])
        self.assertEqual(env.queue_count(), 0)


class CorruptConfigTest(EximTestCase):
    def test_corrupt_config_is_logged_and_mail_flows(self):
        env = self.env
        env.write_ms_conf('store: { path = "/nowhere"; capacity = ; \n garbage {{{\n')
        out = env.send("alice@example.com", ["zed@example.com"], user="alice@example.com",
                       subject="corrupt-send")
        self.assertEqual(out.mail[0], 250, out)
        env.wait_done(out.message_id)
        self.assertEqual(subjects(env, "zed@example.com"), ["corrupt-send"])
        # One line per Exim process, naming the file, the line and the policy.
        self.assertTrue(env.log_lines(
            rf"mailsuspend: store unavailable \(config: {re.escape(env.ms_conf)}:1: syntax error\); "
            r"fail policy open"))
        out = env.local_smtp("outside@example.com", ["zed@example.com"], subject="corrupt-bs")
        self.assertEqual(out.data[0], 250, out)
        self.assertIn("corrupt-bs", subjects(env, "zed@example.com"))


class ConfigEditedWhileRunningTest(EximTestCase):
    """The daemon opens the store once and hands it to every connection; an
    edited mailsuspend.conf must still reach the next connection."""

    def test_running_daemon_picks_up_the_new_config(self):
        env = self.env
        env.cli("suspend", "alice@example.com", "--service", "send")
        out = env.send("alice@example.com", ["zed@example.com"], user="alice@example.com")
        self.assertIn("Permanent Failure", reply_text(out.mail))
        with open(env.ms_conf) as f:
            text = f.read()
        env.write_ms_conf(text.replace("Permanent Failure: Your account has been suspended for a "
                                       "violation of the terms of usage.",
                                       "Sending is paused for this mailbox."))
        out = env.send("alice@example.com", ["zed@example.com"], user="alice@example.com")
        self.assertEqual(out.mail[0], 550, out)
        self.assertIn("Sending is paused for this mailbox.", reply_text(out.mail))
        # And the store it reads is still the live one.
        env.cli("unsuspend", "alice@example.com", "--service", "send")
        out = env.send("alice@example.com", ["zed@example.com"], user="alice@example.com")
        self.assertEqual(out.mail[0], 250, out)


SNAPSHOTS = "/var/cache/mailsuspend"  # the default: the module reads nothing else


def snapshot_of(conf):
    """The snapshot the CLI left for conf (config_snapshot.hpp), or None."""
    for name in os.listdir(SNAPSHOTS) if os.path.isdir(SNAPSHOTS) else []:
        path = os.path.join(SNAPSHOTS, name)
        with open(path, "rb") as f:
            if conf.encode() in f.read(4096):
                return path
    return None


class ConfigSnapshotTest(EximTestCase):
    """A fresh Exim process reads the config's snapshot, which the CLI keeps,
    instead of parsing the file: an edit the CLI has not seen, or a damaged
    snapshot, must still give the file's config at once."""

    SHIPPED = ("Permanent Failure: Your account has been suspended for a violation of the terms of "
               "usage. Please contact your system administrator.")

    def refused_text(self):
        out = self.env.local_smtp("alice@example.com", ["zed@example.com"], subject="snapshot")
        self.assertEqual(out.mail[0], 550, out)
        return reply_text(out.mail)

    def test_an_edit_or_a_damaged_snapshot_gives_the_files_config(self):
        env = self.env
        env.cli("suspend", "alice@example.com", "--service", "send")
        snapshot = snapshot_of(env.ms_conf)
        self.assertIsNotNone(snapshot, "the CLI kept no snapshot of " + env.ms_conf)
        self.assertEqual(os.stat(snapshot).st_mode & 0o777, 0o644)
        self.assertIn(self.SHIPPED, self.refused_text())
        with open(env.ms_conf) as f:
            text = f.read()
        # An edit the CLI has not seen: the snapshot no longer matches the file.
        self.assertIn("violation of the terms of usage.", text)
        env.write_ms_conf(text.replace("violation of the terms of usage.", "violation. Sending is paused for this mailbox."))
        self.assertIn("Sending is paused for this mailbox.", self.refused_text())
        env.cli("status", "alice@example.com")  # any command keeps the snapshot
        self.assertIn("Sending is paused for this mailbox.", self.refused_text())
        # A damaged snapshot (a flipped bit near its end, in the values) is not read.
        with open(snapshot, "r+b") as f:
            f.seek(-3, os.SEEK_END)
            byte = f.read(1)
            f.seek(-3, os.SEEK_END)
            f.write(bytes([byte[0] ^ 1]))
        self.assertIn("Sending is paused for this mailbox.", self.refused_text())
        self.assertEqual(env.log_lines(r"mailsuspend: store unavailable"), [])


if __name__ == "__main__":
    eximtest.main()
