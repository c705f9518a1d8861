#!/usr/bin/env python3
"""Security against the real servers:

 - a real unprivileged local user (useradd here, userdel after), in neither
   store.read_group nor store.write_group, can neither read nor change any
   flag or counter: every file of the store refuses it, `mailsuspend
   suspend` run by it fails with a clear error and changes nothing; the
   permissions after `mailsuspend init` are those of README "Permissions"
   with the default groups (read_group mailsuspend, write_group Debian-exim):
   a member of the read group (a mail user) reads the store but cannot open
   the lock, journal or counters, so it cannot stall a writer; Exim's own
   identity (Debian-exim, no supplementary groups: Exim drops them) enters the
   directory through its ACL and writes;
 - a reason holding CR/LF or control characters is refused by the CLI
   (exit 2, nothing stored), and one stored anyway through the C++ API
   (tests/faults/fault_writer raw-suspend, bypassing the CLI) reaches the
   SMTP 550 reply, the IMAP NO and POP3 -ERR replies, Exim's main log and
   Dovecot's log only sanitised: one reply line, no CR, LF or ESC.

    test_security.py --cli C --so S --snippets D --modules M --snippet F --helper H
"""
import argparse
import grp
import hashlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

import faults  # noqa: F401  (puts the exim and dovecot harnesses on sys.path)
import eximtest
import harness
from test_dovecot import fresh_source

ARGS = None
USER = "msfault-nobody"
READER = "msfault-reader"     # in read_group only: a mail process's user
READ_GROUP = "mailsuspend"   # the defaults of store.read_group / write_group
WRITE_GROUP = "Debian-exim"
ALICE = "alice@example.com"
# What a buggy panel could store: a CRLF that would start a new protocol
# line, a bare LF, an ANSI escape and a BEL.
EVIL_REASON = "unpaid\r\n* OK [ALERT] injected\r\n550 injected\nX\x1b[31mred\x07"
INJECTED = ("* OK [ALERT] injected", "550 injected", "X\x1b")
STORE_FILES = ("store", "counters", "journal", "lock", "token.key", "changed")


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


def as_user(argv, user=USER):
    """argv run as user with its own groups only (initgroups)."""
    pw = pwd.getpwnam(user)
    return run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
                *argv])


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class UnprivilegedUser(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise AssertionError("must run as root (useradd, a store with real groups)")
        for name in (USER, READER):
            run(["userdel", name])
            run(["groupdel", name])
        eximtest.ensure_read_group()   # as the package's postinst does
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--user-group", USER], check=True)
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--user-group", "--groups", READ_GROUP, READER], check=True)
        cls.tmp = tempfile.mkdtemp(prefix="ms-security-")
        os.chmod(cls.tmp, 0o755)   # the user may reach the store directory's parent
        cls.store = os.path.join(cls.tmp, "store")
        cls.config = os.path.join(cls.tmp, "mailsuspend.conf")
        with open(cls.config, "w") as f:
            f.write(f"""
store: {{ path = "{cls.store}"; capacity = 1000; fail_policy = "open";
         audit_log = "{cls.tmp}/audit.log"; }};
delivery: {{ default_mode = "queue"; queue_expiry = "4d8h";
            flush_command = "/bin/true {{address}}"; fail_queued_command = "/bin/true {{address}}"; }};
""")
        os.chmod(cls.config, 0o644)   # the config is not secret; the store is
        cls.cli = faults.Cli(ARGS.cli, cls.config)
        cls.cli("init")
        cls.cli("suspend", ALICE, "--service", "imap", "--reason", "baseline")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        for name in (USER, READER):
            run(["userdel", name])
            run(["groupdel", name])

    def test_user_is_outside_both_groups(self):
        groups = subprocess.run(["id", "-Gn", USER], capture_output=True, text=True).stdout.split()
        self.assertNotIn(READ_GROUP, groups)
        self.assertNotIn(WRITE_GROUP, groups)

    def test_permissions_after_init(self):
        st = os.stat(self.store)
        self.assertEqual(oct(st.st_mode & 0o7777), oct(0o750))
        self.assertEqual((st.st_uid, grp.getgrgid(st.st_gid).gr_name), (0, READ_GROUP))
        # The store is what readers map; the rest only writers may open.
        # changed: the notify file readers watch (inotify needs read access)
        for name, mode in (("store", 0o664), ("counters", 0o660), ("journal", 0o660),
                           ("lock", 0o660), ("changed", 0o664)):
            st = os.stat(os.path.join(self.store, name))
            self.assertEqual(oct(st.st_mode & 0o7777), oct(mode), name)
            self.assertEqual((st.st_uid, grp.getgrgid(st.st_gid).gr_name), (0, WRITE_GROUP), name)
        acl = run(["getfacl", "--omit-header", "--numeric", self.store]).stdout.split()
        exim_gid = grp.getgrnam(WRITE_GROUP).gr_gid
        self.assertIn(f"group:{exim_gid}:r-x", acl)
        self.assertIn("other::---", acl)
        st = os.stat(os.path.join(self.store, "token.key"))
        self.assertEqual(st.st_mode & 0o007, 0, "token.key readable by others")
        self.assertEqual(st.st_mode & 0o022, 0, "token.key writable by group or others")
        # README says 0640; the core makes it 0660 (root:write_group: Exim
        # records automatic suspensions).  Either way: nothing for others.
        st = os.stat(os.path.join(self.tmp, "audit.log"))
        self.assertEqual(st.st_mode & 0o007, 0, oct(st.st_mode))
        self.assertEqual(st.st_uid, 0)

    def test_user_cannot_open_any_store_file(self):
        for name in STORE_FILES + ("evidence",):
            path = os.path.join(self.store, name)
            for mode in ("rb", "r+b"):
                res = as_user([sys.executable, "-c",
                               f"open({path!r}, {mode!r})"])
                self.assertNotEqual(res.returncode, 0, (name, mode))
                self.assertIn("PermissionError", res.stderr, (name, mode, res.stderr))
        res = as_user(["ls", self.store])
        self.assertNotEqual(res.returncode, 0)

    def test_cli_as_user_fails_clearly_and_changes_nothing(self):
        before = {n: digest(os.path.join(self.store, n)) for n in STORE_FILES}
        for argv in (["suspend", "bob@example.com", "--service", "all"],
                     ["unsuspend", ALICE, "--service", "imap"],
                     ["set-mode", ALICE, "discard"],
                     ["rebuild"], ["sweep"]):
            res = as_user([ARGS.cli, "--config", self.config, *argv])
            self.assertNotIn(res.returncode, (0, 2), (argv, res))
            self.assertRegex(res.stderr, r"(?i)permission denied|not permitted|root",
                             (argv, res.stderr))
            self.assertNotIn("Traceback", res.stderr)
        res = as_user([ARGS.cli, "--config", self.config, "status", ALICE])
        self.assertNotEqual(res.returncode, 0, res)
        self.assertNotIn("SUSPENDED", res.stdout)
        after = {n: digest(os.path.join(self.store, n)) for n in STORE_FILES}
        self.assertEqual(before, after)
        status = self.cli("status", "bob@example.com").stdout
        self.assertNotIn("SUSPENDED", status)
        self.assertRegex(self.cli("status", ALICE).stdout, r"imap\s+SUSPENDED")

    def test_read_group_member_cannot_open_what_writers_lock(self):
        """Issue 12 item 1: a mail user that could open the lock file could hold
        flock(LOCK_EX) and stall every writer, Exim's included."""
        for name in ("lock", "journal", "counters"):
            path = os.path.join(self.store, name)
            res = as_user([sys.executable, "-c",
                           f"import fcntl; fcntl.flock(open({path!r}, 'rb'), fcntl.LOCK_EX)"],
                          READER)
            self.assertIn("PermissionError", res.stderr, (name, res.stderr))

    def test_read_group_cannot_learn_who_acted(self):
        """Issue 12 item 12: the store, which every mail process reads, keeps what
        they need (flags, expiries, modes, the reason shown to the user) and not
        who acted, which only the audit log and the journal keep, and a read
        group member can open neither."""
        actor = "panel-operator-4711"
        self.cli("--actor", actor, "suspend", "carol@example.com", "--service", "imap",
                 "--reason", "actor test")
        with open(os.path.join(self.store, "store"), "rb") as f:
            self.assertNotIn(actor.encode(), f.read())
        with open(os.path.join(self.tmp, "audit.log")) as f:
            self.assertIn(actor, f.read())
        for path in (os.path.join(self.store, "journal"), os.path.join(self.tmp, "audit.log")):
            res = as_user([sys.executable, "-c", f"open({path!r}, 'rb')"], READER)
            self.assertIn("PermissionError", res.stderr, (path, res.stderr))

    def test_exim_identity_enters_and_writes(self):
        """Exim runs as Debian-exim with no supplementary groups (it drops them
        all): it gets into the read group's directory only through the ACL."""
        pw = pwd.getpwnam(WRITE_GROUP)
        code = "; ".join(f"open({os.path.join(self.store, n)!r}, 'r+b')"
                         for n in ("store", "counters", "journal", "lock", "changed"))
        res = run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
                   sys.executable, "-c", code])
        self.assertEqual(res.returncode, 0, res.stderr)

    def test_metrics_files_each_for_its_host_class(self):
        """The event counters (mailsuspend metrics): Dovecot's processes (read
        group) add to metrics-dovecot only, Exim (write group, no
        supplementary groups) to metrics-exim only, so a read-group member
        can never truncate a file Exim maps; others open neither."""
        for name, group in (("metrics-dovecot", READ_GROUP), ("metrics-exim", WRITE_GROUP)):
            st = os.stat(os.path.join(self.store, name))
            self.assertEqual(oct(st.st_mode & 0o7777), oct(0o660), name)
            self.assertEqual((st.st_uid, grp.getgrgid(st.st_gid).gr_name), (0, group), name)
        dovecot, exim = (os.path.join(self.store, n) for n in ("metrics-dovecot", "metrics-exim"))
        res = as_user([sys.executable, "-c", f"open({dovecot!r}, 'r+b')"], READER)
        self.assertEqual(res.returncode, 0, res.stderr)
        res = as_user([sys.executable, "-c", f"open({exim!r}, 'r+b')"], READER)
        self.assertIn("PermissionError", res.stderr, res.stderr)
        pw = pwd.getpwnam(WRITE_GROUP)
        as_exim = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
                   sys.executable, "-c"]
        self.assertEqual(run(as_exim + [f"open({exim!r}, 'r+b')"]).returncode, 0)
        self.assertIn("PermissionError", run(as_exim + [f"open({dovecot!r}, 'r+b')"]).stderr)
        for path in (dovecot, exim):
            res = as_user([sys.executable, "-c", f"open({path!r}, 'rb')"])
            self.assertIn("PermissionError", res.stderr, (path, res.stderr))

    def test_read_group_member_reads_but_cannot_change(self):
        """A mail process's user: it may read the flags, never change them."""
        res = as_user([ARGS.cli, "--config", self.config, "status", ALICE], READER)
        self.assertEqual(res.returncode, 0, res)
        self.assertRegex(res.stdout, r"imap\s+SUSPENDED")
        before = {n: digest(os.path.join(self.store, n)) for n in STORE_FILES}
        for name in ("store", "counters", "journal", "lock", "token.key", "changed"):
            path = os.path.join(self.store, name)
            res = as_user([sys.executable, "-c", f"open({path!r}, 'r+b')"], READER)
            self.assertIn("PermissionError", res.stderr, (name, res.stderr))
        # ... but may watch the notify file (inotify_add_watch needs read access)
        notify = os.path.join(self.store, "changed")
        res = as_user([sys.executable, "-c", f"open({notify!r}, 'rb')"], READER)
        self.assertEqual(res.returncode, 0, res.stderr)
        res = as_user([sys.executable, "-c",
                       f"open({os.path.join(self.store, 'token.key')!r}, 'rb')"], READER)
        self.assertIn("PermissionError", res.stderr, "token.key readable by read_group")
        res = as_user([ARGS.cli, "--config", self.config, "unsuspend", ALICE, "--service", "imap"],
                      READER)
        self.assertNotIn(res.returncode, (0, 2), res)
        self.assertRegex(res.stderr, r"(?i)permission denied", res.stderr)
        self.assertEqual(before, {n: digest(os.path.join(self.store, n)) for n in STORE_FILES})

    def test_cli_refuses_control_characters_in_reasons(self):
        before = digest(os.path.join(self.store, "store"))
        for reason in ("a\r\nb", "a\nb", "a\rb", "a\x1b[31mb", "a\x07b", "a\x7fb"):
            res = run([ARGS.cli, "--config", self.config, "suspend", "bob@example.com",
                       "--service", "imap", "--reason", reason])
            self.assertEqual(res.returncode, 2, (reason, res))
            self.assertTrue(res.stderr.strip(), reason)
        self.assertEqual(before, digest(os.path.join(self.store, "store")))


def assert_clean(test, text, where):
    """No injected protocol line and no raw control character in text."""
    for line in text.splitlines():
        for bad in INJECTED:
            test.assertFalse(line.startswith(bad), f"{where}: injected line {line!r}")
    test.assertNotIn("\x1b", text, where)
    test.assertNotIn("\x07", text, where)


class ReasonsInExim(eximtest.EximTestCase):
    def test_smtp_reply_and_mainlog_sanitised(self):
        env = self.env
        res = run([ARGS.helper, env.ms_conf, "raw-suspend", ALICE, "send", EVIL_REASON])
        self.assertEqual(res.returncode, 0, res.stderr)
        # the admin's terminal gets the reason made harmless too
        status = env.cli("status", ALICE).stdout
        self.assertRegex(status, r"send\s+SUSPENDED")
        self.assertIn("unpaid", status)
        assert_clean(self, status, "mailsuspend status")
        self.assertNotIn("\r", status)
        raw = raw_smtp_mail_from(env.port, ALICE)
        lines = raw.split(b"\r\n")[:-1]
        self.assertTrue(lines, raw)
        # every line of the reply is a 550 line: nothing injected a new reply
        for line in lines:
            self.assertRegex(line, rb"^550[- ]", raw)
        self.assertNotIn(b"\x1b", raw)
        self.assertNotIn(b"\x07", raw)
        self.assertNotIn(b"\n", raw.replace(b"\r\n", b""))
        self.assertIn(b"unpaid", raw)   # the reason is there, made harmless
        print(f"SMTP reply to the suspended sender: {raw!r}", file=sys.stderr)
        log = env.mainlog()
        self.assertIn("unpaid", log)
        assert_clean(self, log, "Exim mainlog")
        for line in log.splitlines():
            # a line is Exim's: a time stamp, or its own indented continuation
            self.assertRegex(line, r"^(\d{4}-\d\d-\d\d | )", f"a log line not started by Exim: {line!r}")


def raw_smtp_mail_from(port, user):
    """AUTH PLAIN then MAIL FROM on a raw socket: the reply bytes as sent."""
    import base64
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        f = s.makefile("rb")

        def reply():
            out = b""
            while True:
                line = f.readline()
                out += line
                if not line or line[3:4] != b"-":
                    return out

        reply()
        s.sendall(b"EHLO client.test\r\n")
        reply()
        token = base64.b64encode(f"\0{user}\0{eximtest.SECRET}".encode())
        s.sendall(b"AUTH PLAIN " + token + b"\r\n")
        assert reply().startswith(b"235"), "AUTH failed"
        s.sendall(f"MAIL FROM:<{user}>\r\n".encode())
        out = reply()
        s.sendall(b"QUIT\r\n")
        return out


class ReasonsInDovecot(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_prerequisites(ARGS)
        cls.server = harness.Dovecot(ARGS, include_reason=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_imap_pop3_replies_and_log_sanitised(self):
        server = self.server
        for service in ("imap", "pop3"):
            res = run([ARGS.helper, server.config, "raw-suspend", ALICE, service, EVIL_REASON])
            self.assertEqual(res.returncode, 0, res.stderr)
        reply, conn = server.imap_login(ALICE, source=fresh_source())
        with conn:
            self.assertTrue(reply.startswith("a NO [CONTACTADMIN] "), conn.transcript)
            self.assertIn("unpaid", reply)
            print(f"IMAP reply: {reply!r}", file=sys.stderr)
            conn.send("z LOGOUT")
            conn.closed_after()
            transcript = "\n".join(l[3:] for l in conn.transcript if l.startswith("S: "))
        assert_clean(self, transcript, "IMAP")
        reply, conn = server.pop3_login(ALICE, source=fresh_source())
        with conn:
            self.assertTrue(reply.startswith("-ERR [AUTH] "), conn.transcript)
            self.assertIn("unpaid", reply)
            print(f"POP3 reply: {reply!r}", file=sys.stderr)
            conn.send("QUIT")
            conn.closed_after()
            transcript = "\n".join(l[3:] for l in conn.transcript if l.startswith("S: "))
        assert_clean(self, transcript, "POP3")
        log = server.log_text()
        self.assertIn("unpaid", log)
        assert_clean(self, log, "Dovecot log")
        for line in log.splitlines():
            self.assertRegex(line, r"^\w{3} [ \d]\d \d\d:\d\d:\d\d ",
                             f"a log line not started by Dovecot: {line!r}")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    for opt in ("--cli", "--so", "--snippets", "--modules", "--snippet", "--helper"):
        parser.add_argument(opt, required=True)
    parser.add_argument("-k", dest="pattern")
    ARGS = parser.parse_args()
    eximtest.PATHS.update(cli=ARGS.cli, so=ARGS.so, snippets=ARGS.snippets)
    import test_dovecot
    test_dovecot.ARGS = ARGS
    loader = unittest.TestLoader()
    if ARGS.pattern:
        loader.testNamePatterns = [f"*{ARGS.pattern}*"]
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(c) for c in
                               (UnprivilegedUser, ReasonsInExim, ReasonsInDovecot))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() and not result.skipped and result.testsRun else 1


if __name__ == "__main__":
    sys.exit(main())
