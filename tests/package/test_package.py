"""The Debian package, end to end (issue 11, item 2), as root on this machine:

1. copies the checkout (tracked files plus untracked ones git does not
   ignore) to a temporary directory, builds it with `dpkg-buildpackage -b`
   and runs lintian on the result (no E: line);
2. installs it with apt-get (a policy-rc.d denies service starts, so no
   system daemon starts) and checks what postinst did: the group and its
   members, the conffiles, the store, the enabled systemd units, the man page;
3. runs the INSTALLED files against the real servers as README.md says: a
   Dovecot on loopback that includes the installed
   /etc/dovecot/conf.d/95-mailsuspend.conf with the one edit README asks for
   (result_success = continue-ok), and an Exim on loopback that includes the
   snippets from /usr/share/mailsuspend/exim/; both read the installed
   /etc/mailsuspend/mailsuspend.conf and /var/lib/mailsuspend with their
   default groups.  Only ports and temporary directories are the test's own;
4. reinstalls the package over itself (the upgrade path: store and an edited
   conffile survive), meets a store from a newer version (configure fails
   with a clear message, the store is untouched), removes it (config and store stay, Dovecot's config
   still parses), and purges it (config, store and log go; the group stays).

It purges the package at the end, pass or fail.  It refuses to start when
mailsuspend is already installed or its paths exist: it would destroy them.
Nothing here skips: without root or the tools it fails.
"""
import argparse
import glob
import grp
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "dovecot"))
from harness import LineClient, free_port  # noqa: E402  (the IMAP client)

SOURCE = None  # the checkout, from --source
PACKAGE = "mailsuspend"
CLI = "/usr/sbin/mailsuspend"
CONF = "/etc/mailsuspend/mailsuspend.conf"
DOVECOT_SNIPPET = "/etc/dovecot/conf.d/95-mailsuspend.conf"
EXIM_SNIPPETS = "/usr/share/mailsuspend/exim"
STORE = "/var/lib/mailsuspend"
LOG_DIR = "/var/log/mailsuspend"
SNAPSHOTS = "/var/cache/mailsuspend"  # the config snapshots (config_snapshot.hpp)
OWNED_PATHS = ("/etc/mailsuspend", STORE, LOG_DIR, SNAPSHOTS)
GROUP = "mailsuspend"
POLICY_RC_D = "/usr/sbin/policy-rc.d"
UNIT_LINKS = ("/etc/systemd/system/timers.target.wants/mailsuspend-sweep.timer",
              "/etc/systemd/system/multi-user.target.wants/mailsuspend-recover.service",
              "/etc/systemd/system/timers.target.wants/mailsuspend-metrics.timer")
# messages.* defaults of conf/mailsuspend.conf (the installed config).
LOGIN_DENIED = "Your account has been suspended."
SEND_SUSPENDED = "Your account has been suspended for a violation of the terms of usage."
PASSWORD = "secret"
APT_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
# Other helpers may hold the dpkg lock for a while.
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]


def run(argv, timeout=120, check=True, **kw):
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL, **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {res.returncode}:\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


def package_state():
    """dpkg's status word (installed, config-files, not-installed)."""
    res = run(["dpkg-query", "-W", "-f=${db:Status-Status}", PACKAGE], check=False)
    return res.stdout.strip() if res.returncode == 0 else "not-installed"


def source_files(root):
    """What a clean checkout holds: tracked files plus untracked files git
    does not ignore (so an uncommitted tree builds as it is)."""
    res = run(["git", "-C", root, "ls-files", "-z", "--cached", "--others",
               "--exclude-standard"])
    return [p for p in res.stdout.split("\0") if p and os.path.lexists(os.path.join(root, p))]


def copy_checkout(root, dest):
    for rel in source_files(root):
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(root, rel), target, follow_symlinks=False)


class Dovecot:
    """The real Dovecot on loopback: the installed conf.d snippet, the
    README's edit to the password passdb, passwd-file users."""

    USERS = ("alice@example.com", "bob@example.com")

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="ms-pkg-dovecot-")
        os.chmod(self.tmp, 0o755)  # the mail processes (nobody) reach ~ below it
        self.port = free_port()
        self.log = os.path.join(self.tmp, "dovecot.log")
        mail = os.path.join(self.tmp, "mail")
        os.makedirs(mail)
        os.chmod(mail, 0o777)
        users = os.path.join(self.tmp, "users")
        with open(users, "w") as f:
            for user in self.USERS:
                f.write(f"{user}:{{PLAIN}}{PASSWORD}:65534:65534::{mail}/{user}\n")
        self.conf = os.path.join(self.tmp, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(f"""
protocols = imap
listen = 127.0.0.1
base_dir = {self.tmp}/run
state_dir = {self.tmp}/state
instance_name = ms-pkg-{os.path.basename(self.tmp)}
log_path = {self.log}
ssl = no
disable_plaintext_auth = no
auth_failure_delay = 0
mail_location = maildir:~/Maildir
first_valid_uid = 100
default_internal_user = dovecot
default_login_user = dovenull

passdb {{
  driver = passwd-file
  args = {users}
  # README's one edit: hand a good password on to the mailsuspend passdb.
  result_success = continue-ok
}}
userdb {{
  driver = passwd-file
  args = {users}
}}
# The installed snippet, unchanged (it includes /usr/share/mailsuspend/dovecot/).
!include {DOVECOT_SNIPPET}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
""")
        self.proc = None

    def start(self):
        run(["dovecot", "-c", self.conf, "-n"])
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"dovecot exited: {self.proc.stdout.read()}\n{self.log_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"dovecot did not listen\n{self.log_text()}")
                time.sleep(0.05)

    def login(self, user):
        with LineClient(self.port) as c:
            c.expect_prefix("* OK")
            c.send(f'a LOGIN "{user}" "{PASSWORD}"')
            return c.read_tagged("a")

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


EXIM_CONF = """\
# The installed snippets, as README.md's unsplit-template steps include them
# (.include_if_exists: a removed package leaves an Exim that starts).
.include_if_exists {snippets}/mailsuspend-main

primary_hostname = mx.test.invalid
qualify_domain = example.com
domainlist local_domains = example.com
acl_smtp_mail = MAIN_ACL_CHECK_MAIL
acl_smtp_rcpt = MAIN_ACL_CHECK_RCPT
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
pid_file_path = {dir}/exim.pid
local_interfaces = <; 127.0.0.1
exim_user = Debian-exim
exim_group = Debian-exim
never_users = root
host_lookup =
rfc1413_hosts =
auth_advertise_hosts = *
message_logs = false

begin acl
.include_if_exists {snippets}/mailsuspend-acl

# Debian's names: mailsuspend's ACLs hand over to these.
acl_check_mail:
  accept

acl_check_rcpt:
  accept  domains = +local_domains
  accept  authenticated = *
  deny    message = relay not permitted

begin routers
.include_if_exists {snippets}/mailsuspend-routers

local_user:
  driver = accept
  domains = +local_domains
  transport = local_maildir

begin transports
local_maildir:
  driver = appendfile
  directory = {dir}/mail
  maildir_format
  create_directory
  user = Debian-exim
  group = Debian-exim

begin retry
*   *   F,10d,1h

begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${{if eq{{$auth3}}{{{secret}}}}}
  server_set_id = $auth2
"""


class Exim:
    """The real exim4-daemon-heavy on loopback with the installed snippets."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ms-pkg-exim-")
        os.chmod(self.dir, 0o755)
        exim_uid = run(["id", "-u", "Debian-exim"]).stdout.strip()
        for sub in ("spool", "log", "mail"):
            os.mkdir(os.path.join(self.dir, sub))
            os.chown(os.path.join(self.dir, sub), int(exim_uid), grp.getgrnam("Debian-exim").gr_gid)
        self.conf = os.path.join(self.dir, "exim.conf")
        with open(self.conf, "w") as f:
            f.write(EXIM_CONF.format(snippets=EXIM_SNIPPETS, dir=self.dir, secret=PASSWORD))
        os.chmod(self.conf, 0o644)
        self.port = free_port()
        self.proc = None

    def start(self):
        run(["exim4", "-C", self.conf, "-bV"])
        self.proc = subprocess.Popen(["exim4", "-C", self.conf, "-bdf", "-oX", str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"exim exited: {self.proc.stdout.read()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("exim did not listen")
                time.sleep(0.05)

    def mail_from(self, user):
        """The reply to MAIL FROM of an authenticated submission by user."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=20) as client:
            client.ehlo("client.test")
            client.login(user, PASSWORD)
            code, text = client.mail(user)
            client.rset()
            # Exim wraps a long reply, repeating the enhanced status code.
            lines = text.decode().split("\n")
            return code, " ".join(line.split(" ", 1)[-1] for line in lines)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class PackageTest(unittest.TestCase):
    """One ordered scenario: the steps share the installed package."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise AssertionError("the package test must run as root: it installs the .deb")
        for tool in ("dpkg-buildpackage", "lintian", "apt-get", "dovecot", "exim4", "git"):
            if shutil.which(tool) is None:
                raise AssertionError(f"{tool} missing (apt-get install debhelper lintian "
                                     "dovecot-core dovecot-imapd exim4-daemon-heavy git)")
        if package_state() != "not-installed":
            raise AssertionError(f"{PACKAGE} is already installed ({package_state()}): "
                                 "this test installs and purges it; purge it first")
        # The snapshots are a cache the CLI regenerates (the other tests' CLI
        # runs leave some for their temporary configs): purging them loses nothing.
        left = [p for p in OWNED_PATHS if os.path.lexists(p) and p != SNAPSHOTS]
        if left:
            raise AssertionError(f"{left} exist: purging the test's package would delete them")
        cls.tmp = tempfile.mkdtemp(prefix="ms-pkg-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        cls.policy_added = False
        cls.addClassCleanup(cls.restore_machine)
        cls.doveconf_ok_before = run(["doveconf", "-n"], check=False).returncode == 0
        cls.build()
        cls.deny_service_starts()

    @classmethod
    def build(cls):
        src = os.path.join(cls.tmp, "mailsuspend")
        copy_checkout(SOURCE, src)
        started = time.monotonic()
        # noautodbgsym: the -dbgsym package is not what this test installs.
        env = dict(os.environ, DEB_BUILD_OPTIONS="noautodbgsym nocheck")
        res = run(["dpkg-buildpackage", "-b", "-uc", "-us", "-j2"], cwd=src, timeout=900,
                  check=False, env=env)
        if res.returncode != 0:
            raise AssertionError(f"dpkg-buildpackage failed:\n{res.stdout[-6000:]}\n{res.stderr[-6000:]}")
        print(f"package built in {time.monotonic() - started:.0f} s", file=sys.stderr)
        debs = glob.glob(os.path.join(cls.tmp, f"{PACKAGE}_*.deb"))
        if len(debs) != 1:
            raise AssertionError(f"expected one {PACKAGE}_*.deb, found {debs}")
        cls.deb = debs[0]
        cls.changes = glob.glob(os.path.join(cls.tmp, f"{PACKAGE}_*.changes"))[0]

    @classmethod
    def deny_service_starts(cls):
        """As scripts/common.sh: maintainer scripts must not start system
        daemons (our timer, or Dovecot restarted by its plugin trigger)."""
        if not os.path.exists(POLICY_RC_D):
            with open(POLICY_RC_D, "w") as f:
                f.write("#!/bin/sh\nexit 101\n")
            os.chmod(POLICY_RC_D, 0o755)
            cls.policy_added = True

    @classmethod
    def restore_machine(cls):
        if package_state() != "not-installed":
            run(["dpkg", "--purge", PACKAGE], env=APT_ENV, timeout=600, check=False)
        if cls.policy_added:
            os.unlink(POLICY_RC_D)

    def cli(self, *argv):
        return run([CLI, *argv])

    def apt(self, *argv):
        return run(APT + list(argv), env=APT_ENV, timeout=600)

    # -- 1. build -------------------------------------------------------
    def test_1_lintian_shows_no_error(self):
        res = run(["lintian", "--pedantic", self.changes], timeout=300, check=False)
        print("lintian:\n" + res.stdout, file=sys.stderr)
        errors = [line for line in res.stdout.splitlines() if line.startswith("E:")]
        self.assertEqual(errors, [], res.stdout)

    # -- 2. install -----------------------------------------------------
    def test_2_install_sets_up_everything(self):
        self.apt("install", self.deb)
        self.assertEqual(package_state(), "installed")
        members = grp.getgrnam(GROUP).gr_mem
        self.assertIn("dovecot", members)
        self.assertIn("Debian-exim", members)
        conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", PACKAGE]).stdout
        self.assertIn(CONF, conffiles)
        self.assertIn(DOVECOT_SNIPPET, conffiles)
        self.assertTrue(os.path.isfile(os.path.join(STORE, "store")))
        st = os.stat(STORE)
        self.assertEqual((st.st_mode & 0o777, st.st_gid), (0o750, grp.getgrnam(GROUP).gr_gid))
        self.assertTrue(os.path.isdir(LOG_DIR))
        for link in UNIT_LINKS:
            self.assertTrue(os.path.islink(link), link)
        # The fleet agent's unit is shipped, but a node joins a fleet only
        # when its admin enables it (it needs the fleet group).
        self.assertTrue(os.path.isfile("/lib/systemd/system/mailsuspend-sync.service"))
        self.assertFalse(os.path.exists("/etc/systemd/system/multi-user.target.wants/mailsuspend-sync.service"))
        self.assertTrue(os.path.isfile("/lib/systemd/system/mailsuspend-notify.service"))
        self.assertFalse(os.path.exists("/etc/systemd/system/multi-user.target.wants/mailsuspend-notify.service"))
        self.assertIn("consistent", self.cli("check").stdout)
        # The postinst's CLI left the parsed config for fresh Exim processes,
        # root's and as readable as the config, no more.
        snapshots = [f for f in glob.glob(os.path.join(SNAPSHOTS, "config-*")) if CONF.encode() in head_of(f)]
        self.assertEqual(len(snapshots), 1, os.listdir(SNAPSHOTS) if os.path.isdir(SNAPSHOTS) else "no " + SNAPSHOTS)
        st = os.stat(snapshots[0])
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (0, os.stat(CONF).st_mode & 0o644))
        # The read group by number for Dovecot's mail processes (the snippet includes it).
        with open(os.path.join(STORE, "dovecot-groups.conf")) as f:
            self.assertIn(f"mail_access_groups = {grp.getgrnam(GROUP).gr_gid}\n", f.read())
        files = run(["dpkg", "-L", PACKAGE]).stdout.split()
        # The Exim snippets Exim includes carry no comments (each line is read
        # by every Exim process); the commented ones are documentation, as
        # they are (not compressed), and hold the same statements.
        for name in ("mailsuspend-main", "mailsuspend-main-light", "mailsuspend-acl", "mailsuspend-routers"):
            with open(os.path.join(EXIM_SNIPPETS, name)) as f:
                installed = f.read().splitlines()
            with open(os.path.join("/usr/share/doc/mailsuspend/exim", name)) as f:
                commented = f.read().splitlines()
            self.assertEqual(installed[0], f"# {name} (commented: /usr/share/doc/mailsuspend/exim/{name})")
            self.assertEqual([l for l in installed[1:] if not l.strip() or l.lstrip().startswith("#")], [], name)
            self.assertEqual(installed[1:], [l for l in commented if l.strip() and not l.lstrip().startswith("#")], name)
        if any(f.startswith("/usr/share/man/") for f in files):
            run(["man", "-w", "mailsuspend"])
            if any("/man5/mailsuspend.conf" in f for f in files):
                run(["man", "-w", "5", "mailsuspend.conf"])

    # -- 3. the installed snippets against the real servers -------------
    def test_3_dovecot_refuses_a_suspended_login(self):
        self.cli("suspend", "alice@example.com", "--service", "imap", "--reason", "pkg test")
        dovecot = Dovecot()
        try:
            dovecot.start()
            reply = dovecot.login("alice@example.com")
            self.assertTrue(reply.startswith("a NO [CONTACTADMIN]"), reply + dovecot.log_text())
            self.assertIn(LOGIN_DENIED, reply)
            reply = dovecot.login("bob@example.com")
            self.assertTrue(reply.startswith("a OK"), reply + dovecot.log_text())
            settings = run(["dovecot", "-c", dovecot.conf, "-a"]).stdout
            self.assertRegex(settings, rf"(?m)^mail_access_groups = {grp.getgrnam(GROUP).gr_gid}$")
        finally:
            dovecot.stop()

    def test_4_exim_refuses_a_send_suspended_sender(self):
        self.cli("suspend", "carol@example.com", "--service", "send")
        exim = Exim()
        try:
            exim.start()
            code, text = exim.mail_from("carol@example.com")
            self.assertEqual(code, 550, text)
            self.assertIn(SEND_SUSPENDED, text)
            code, text = exim.mail_from("dave@example.com")
            self.assertEqual(code, 250, text)
        finally:
            exim.stop()

    # -- 4. upgrade, remove, purge ----------------------------------------
    def test_5_reinstall_keeps_store_and_edited_conffile(self):
        with open(CONF, "a") as f:
            f.write("\n# edited by the package test\n")
        self.apt("install", "--reinstall", self.deb)
        self.assertEqual(package_state(), "installed")
        with open(CONF) as f:
            self.assertIn("# edited by the package test", f.read())
        self.assertIn('"suspended":true', self.cli("status", "alice@example.com", "--json")
                      .stdout.replace(" ", ""))

    def test_6_store_from_a_newer_version_fails_configure_loudly(self):
        """A downgrade: the postinst must not touch a store it cannot read,
        and must say why instead of leaving the hosts on their fail policy."""
        store = os.path.join(STORE, "store")
        with open(store, "r+b") as f:
            f.seek(8)  # layout::Header::layout_version, after the 8-byte magic
            version = int.from_bytes(f.read(4), "little")
            f.seek(8)
            f.write((version + 1).to_bytes(4, "little"))
        try:
            res = run(APT + ["install", "--reinstall", self.deb], env=APT_ENV, timeout=600,
                      check=False)
            self.assertNotEqual(res.returncode, 0, res.stdout)
            out = res.stdout + res.stderr
            self.assertIn(f"unknown layout version {version + 1}", out)
            self.assertIn("newer mailsuspend", out)
            self.assertIn("could not be set up", out)
            self.assertEqual(package_state(), "half-configured")
        finally:
            with open(store, "r+b") as f:
                f.seek(8)
                f.write(version.to_bytes(4, "little"))
        run(["dpkg", "--configure", PACKAGE], env=APT_ENV, timeout=300)
        self.assertEqual(package_state(), "installed")
        self.assertIn('"suspended":true', self.cli("status", "alice@example.com", "--json")
                      .stdout.replace(" ", ""))

    def test_6b_store_in_the_previous_layout_is_converted_on_upgrade(self):
        """An upgrade from a version that wrote layout 1 (no tag bytes, no
        domain filter): the postinst's `mailsuspend init` reports the older
        layout, `mailsuspend rebuild` converts it, and every record is kept."""
        store = os.path.join(STORE, "store")
        with open(store, "rb") as f:
            image = f.read()
        # store_layout.hpp's Header: slot_count at 32, slots_offset 40,
        # arena_offset 48, arena_size 56, file_size 64, tags_offset 160, the
        # domain filter's 512 bytes after it; layout 1 has the arena right
        # after the slots and neither of the two.
        field = lambda at: int.from_bytes(image[at:at + 8], "little")
        slot_count, slots_offset, arena_offset, arena_size = field(32), field(40), field(48), field(56)
        slots_end = slots_offset + slot_count * 32
        old = bytearray(image[:slots_end] + image[arena_offset:arena_offset + arena_size])
        old += bytes(-len(old) % 4096)
        old[8:12] = (1).to_bytes(4, "little")
        old[48:56] = slots_end.to_bytes(8, "little")
        old[64:72] = len(old).to_bytes(8, "little")
        old[160:168 + 512] = bytes(8 + 512)
        with open(store, "wb") as f:
            f.write(old)
        self.expect_converted_on_upgrade(1)

    def test_6c_store_in_layout_2_is_converted_on_upgrade(self):
        """An upgrade from a version that wrote layout 2 (the same header and
        slots; record blobs of version 2 anywhere in the arena): the same
        path.  The blobs the older version wrote and their conversion are the
        unit test StoreLayout3.ALayoutTwoStoreIsConvertedByRebuild; this is
        the postinst's part."""
        store = os.path.join(STORE, "store")
        with open(store, "r+b") as f:
            f.seek(8)  # layout::Header::layout_version
            f.write((2).to_bytes(4, "little"))
        self.expect_converted_on_upgrade(2)

    def expect_converted_on_upgrade(self, older):
        """The store in layout `older` is refused by the CLI, converted by the
        postinst of a reinstall to layout 3 with alice still suspended, and
        the postinst says to restart Exim (its running daemon still has the
        older module: README, Store layout)."""
        store = os.path.join(STORE, "store")
        res = run([CLI, "status", "alice@example.com", "--json"], check=False)
        self.assertNotEqual(res.returncode, 0, res.stdout)
        self.assertIn(f"older layout version {older}", res.stderr)
        res = run(APT + ["install", "--reinstall", self.deb], env=APT_ENV, timeout=600)
        self.assertIn("converting the store", res.stdout + res.stderr)
        self.assertIn("restart Exim", res.stdout + res.stderr)
        self.assertEqual(package_state(), "installed")
        self.assertIn('"suspended":true', self.cli("status", "alice@example.com", "--json")
                      .stdout.replace(" ", ""))
        with open(store, "rb") as f:
            f.seek(8)
            self.assertEqual(int.from_bytes(f.read(4), "little"), 3)
        self.cli("check")

    def test_7_remove_keeps_config_and_store(self):
        self.apt("remove", PACKAGE)
        self.assertEqual(package_state(), "config-files")
        self.assertTrue(os.path.isfile(CONF))
        self.assertTrue(os.path.isfile(os.path.join(STORE, "store")))
        self.assertTrue(os.path.isfile(DOVECOT_SNIPPET))
        # The snapshots are for the module's processes: gone with the module.
        self.assertFalse(os.path.lexists(SNAPSHOTS))
        if self.doveconf_ok_before:
            # The conffile left behind must not break the system's Dovecot.
            run(["doveconf", "-n"])

    def test_8_purge_removes_config_store_and_log(self):
        self.apt("purge", PACKAGE)
        self.assertEqual(package_state(), "not-installed")
        for path in OWNED_PATHS + (DOVECOT_SNIPPET,) + UNIT_LINKS:
            self.assertFalse(os.path.lexists(path), path)
        grp.getgrnam(GROUP)  # a system group stays (Debian policy 9.2.2)


def head_of(path):
    with open(path, "rb") as f:
        return f.read(4096)


def main():
    global SOURCE
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True, help="the mailsuspend checkout")
    args, rest = parser.parse_known_args()
    SOURCE = os.path.abspath(args.source)
    # Steps run in name order and depend on each other: stop at the first failure.
    unittest.main(module="__main__", argv=[sys.argv[0], "-v", "--failfast", *rest])


if __name__ == "__main__":
    main()
