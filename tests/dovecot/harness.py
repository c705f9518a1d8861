"""Runs the real Debian Dovecot from a generated config in a temporary
directory, with the built mailsuspend modules and the documented conf.d
snippet, and gives tests small line-based IMAP/POP3/ManageSieve clients.

Nothing here skips: without root, dovecot, the built modules or the CLI,
setup fails loudly.
"""
import base64
import grp
import hashlib
import hmac
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
STOCK_AUTH_MODULES = "/usr/lib/dovecot/modules/auth"
CORE_MODULE = "mailsuspend/libmailsuspend_core.so"
CONFIG_PLACEHOLDER = "/etc/mailsuspend/mailsuspend.conf"
# The snippet's include of the group file `mailsuspend init` writes in the store.
GROUPS_PLACEHOLDER = "/var/lib/mailsuspend/dovecot-groups.conf"
PASSWORD = "secret"
USERS = ["alice@example.com", "bob@example.com", "carol@example.org",
         "dave@example.org"]
PROXIED = "proxied@example.com"
# A Dovecot master user (master passdb): "user*admin" logs in as user.
MASTER_USER = "admin"
MASTER_PASSWORD = "master-secret"
PLUGINS = ("lib95_imap_mailsuspend_plugin.so", "lib95_pop3_mailsuspend_plugin.so",
           "lib95_sieve_mailsuspend_plugin.so")
LOGIN_DENIED = "Mailbox suspended, contact support."
LOGIN_IPS_TEXT = "Too many network addresses logged in today, contact support."
SUSPENDED = "Session ended: mailbox suspended."
CLIENT_TIMEOUT = 15.0


class SetupError(AssertionError):
    """A missing prerequisite: the test fails, it is never skipped."""


def require_prerequisites(args):
    if os.geteuid() != 0:
        raise SetupError("the Dovecot integration tests must run as root "
                         "(they start dovecot and bind-mount its auth module dir)")
    if not os.access(DOVECOT, os.X_OK):
        raise SetupError("dovecot not found (apt-get install dovecot-core "
                         "dovecot-imapd dovecot-pop3d dovecot-managesieved dovecot-lmtpd)")
    for path in (args.cli, args.snippet,
                 os.path.join(args.modules, "libauthdb_mailsuspend.so"),
                 *(os.path.join(args.modules, name) for name in PLUGINS),
                 os.path.join(args.modules, CORE_MODULE)):
        if not os.path.exists(path):
            raise SetupError(f"missing build artefact: {path}")
    if shutil.which("unshare") is None:
        raise SetupError("unshare (util-linux) is needed to give the test "
                         "dovecot its own auth module directory")
    ensure_read_group()


def ensure_read_group():
    """The store's default read group, created as the package's postinst
    does: the tests run the default store.read_group, never a test-only one."""
    try:
        grp.getgrnam("mailsuspend")
    except KeyError:
        subprocess.run(["addgroup", "--system", "mailsuspend"], check=True,
                       stdout=subprocess.DEVNULL)


_taken_ports = set()


def free_port():
    """A free loopback port below the kernel's ephemeral range (so client
    connections cannot grab it before dovecot listens), distinct from every
    port handed out before in this process."""
    while True:
        port = random.randrange(20000, 32000)
        if port in _taken_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken_ports.add(port)
        return port


class Dovecot:
    """One Dovecot instance plus its mailsuspend config and store."""

    # fail_policy: the shipped default ("open"), so a store the modules cannot
    # read shows up as a suspended user who logs in, as it would for users.
    def __init__(self, args, fail_policy="open", include_reason=False,
                 create_store=True, auth_cache=True, with_mailsuspend=True,
                 extra_conf="", corrupt_store=False, continue_ok=True,
                 core_module=True, master_passdb=None, mailsuspend_conf=""):
        """with_mailsuspend=False gives the same Dovecot without the
        snippet (the benchmark's baseline); extra_conf is appended.
        master_passdb: None, "default" (a master passdb as Dovecot's
        documentation shows it, without pass = yes) or "pass" (pass = yes).
        mailsuspend_conf: groups appended to the mailsuspend config."""
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="ms-dovecot-")
        # dovecot's auth (user dovecot) and mail processes (nobody) must
        # reach the store and the mail dirs below this directory.
        os.chmod(self.tmp, 0o755)
        self.ports = {name: free_port() for name in
                      ("imap", "pop3", "sieve", "lmtp")}
        self.config = os.path.join(self.tmp, "mailsuspend.conf")
        self.log = os.path.join(self.tmp, "dovecot.log")
        self.proc = None
        self._write_mailsuspend_conf(fail_policy, include_reason, mailsuspend_conf)
        if create_store:
            self.cli("init")
        if corrupt_store:
            self._corrupt_store()
        self.continue_ok = continue_ok
        self.core_module = core_module
        self.master_passdb = master_passdb
        self._write_dovecot_conf(auth_cache, with_mailsuspend, extra_conf)
        self._prepare_auth_modules()

    # -- setup --------------------------------------------------------
    def _write_mailsuspend_conf(self, fail_policy, include_reason, more=""):
        store = os.path.join(self.tmp, "store")
        with open(self.config, "w") as f:
            f.write(f"""
store: {{ path = "{store}"; capacity = 1000; fail_policy = "{fail_policy}";
         audit_log = "{self.tmp}/audit.log"; }};
delivery: {{ default_mode = "queue"; queue_expiry = "4d8h";
            flush_command = "/bin/true {{address}}";
            fail_queued_command = "/bin/true {{address}}"; }};
address: {{ default_domain = ""; subaddress_separator = "+"; }};
webmail: {{ hosts = [ "127.0.0.2" ]; }};
messages: {{ login_denied = "{LOGIN_DENIED}"; unavailable = "{SUSPENDED}"; login_ips = "{LOGIN_IPS_TEXT}";
            send_suspended = "Sending suspended."; receive_rejected = "Receiving suspended.";
            include_reason = {"true" if include_reason else "false"}; }};
{more}
""")
        os.chmod(self.config, 0o644)

    def _corrupt_store(self):
        """Overwrites the head of the store's table file: a layout no
        reader knows (bad magic number)."""
        table = os.path.join(self.tmp, "store", "store")
        if not os.path.isfile(table):
            raise SetupError(f"no store table at {table} to corrupt")
        with open(table, "r+b") as f:
            f.write(b"\xffNOT-A-MAILSUSPEND-LAYOUT\xff" * 4)

    def _write_dovecot_conf(self, auth_cache, with_mailsuspend, extra_conf):
        mail = os.path.join(self.tmp, "mail")
        os.makedirs(mail)
        os.chmod(mail, 0o777)
        users = os.path.join(self.tmp, "users")
        with open(users, "w") as f:
            for user in USERS:
                f.write(f"{user}:{{PLAIN}}{PASSWORD}:65534:65534::{mail}/{user}\n")
            # A user this server proxies elsewhere (a front end's passdb):
            # port 1 on loopback, where nothing listens.
            f.write(f"{PROXIED}:{{PLAIN}}{PASSWORD}:65534:65534::{mail}/{PROXIED}::"
                    "proxy=y host=127.0.0.1 port=1\n")
        os.chmod(users, 0o644)
        # The documented snippet, pointed at this test's mailsuspend config and store.
        with open(self.args.snippet) as f:
            snippet = f.read()
        for placeholder in (CONFIG_PLACEHOLDER, GROUPS_PLACEHOLDER):
            if placeholder not in snippet:
                raise SetupError(f"{self.args.snippet} no longer names {placeholder}: update the harness")
        snippet = snippet.replace(CONFIG_PLACEHOLDER, self.config).replace(
            GROUPS_PLACEHOLDER, os.path.join(self.tmp, "store", "dovecot-groups.conf"))
        snippet_path = os.path.join(self.tmp, "95-mailsuspend.conf")
        with open(snippet_path, "w") as f:
            f.write(snippet)
        plugin_dir = os.path.join(self.tmp, "modules")
        os.makedirs(plugin_dir)
        for name in PLUGINS:
            # copies: mail processes run as the mail user, who may not
            # be able to reach the build tree
            shutil.copy(os.path.join(self.args.modules, name), plugin_dir)
        os.makedirs(os.path.join(plugin_dir, "mailsuspend"))
        if self.core_module:
            shutil.copy(os.path.join(self.args.modules, CORE_MODULE),
                        os.path.join(plugin_dir, CORE_MODULE))
        cache = ("auth_cache_size = 1M\nauth_cache_ttl = 1 hour\n"
                 "auth_cache_negative_ttl = 1 hour\n") if auth_cache else ""
        p = self.ports
        conf = f"""
protocols = imap pop3 sieve lmtp
listen = 127.0.0.1
base_dir = {self.tmp}/run
state_dir = {self.tmp}/state
instance_name = ms-test-{os.path.basename(self.tmp)}
log_path = {self.log}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5
# no 2 s delay after a failed login: keeps the suite fast
auth_failure_delay = 0
{cache}
mail_location = maildir:~/Maildir
mail_plugin_dir = {plugin_dir}
first_valid_uid = 100
default_internal_user = dovecot
default_login_user = dovenull
login_trusted_networks =
imap_hibernate_timeout = 0

{self._master_passdb_conf()}
passdb {{
  driver = passwd-file
  args = {users}
{"  result_success = continue-ok" if with_mailsuspend and self.continue_ok else ""}
}}
userdb {{
  driver = passwd-file
  args = {users}
}}
{"!include " + snippet_path if with_mailsuspend else ""}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {p['imap']}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {p['pop3']}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service managesieve-login {{
  inet_listener sieve {{
    address = 127.0.0.1
    port = {p['sieve']}
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0600
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {p['lmtp']}
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}
{extra_conf}
"""
        self.dovecot_conf = os.path.join(self.tmp, "dovecot.conf")
        with open(self.dovecot_conf, "w") as f:
            f.write(conf)

    def _master_passdb_conf(self):
        if self.master_passdb is None:
            return ""
        masters = os.path.join(self.tmp, "masters")
        with open(masters, "w") as f:
            f.write(f"{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}\n")
        os.chmod(masters, 0o644)
        return f"""auth_master_user_separator = *
passdb {{
  driver = passwd-file
  master = yes
  args = {masters}
{"  pass = yes" if self.master_passdb == "pass" else ""}
}}"""

    def _prepare_auth_modules(self):
        """Dovecot's auth process only loads modules from its compiled-in
        directory; the test dovecot gets a private bind mount of it that
        holds the stock modules plus the built libauthdb_mailsuspend.so,
        so the system directory is never touched."""
        self.auth_modules = os.path.join(self.tmp, "auth-modules")
        os.makedirs(self.auth_modules)
        for name in os.listdir(STOCK_AUTH_MODULES):
            if name != "libauthdb_mailsuspend.so":
                # copies: a symlink would point into the bind mount itself
                shutil.copy(os.path.join(STOCK_AUTH_MODULES, name),
                            self.auth_modules)
        shutil.copy(os.path.join(self.args.modules, "libauthdb_mailsuspend.so"),
                    self.auth_modules)

    # -- lifecycle ----------------------------------------------------
    def start(self):
        check = subprocess.run([DOVECOT, "-c", self.dovecot_conf, "-n"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise SetupError(f"dovecot rejects the generated config:\n{check.stderr}")
        script = (f"mount --bind {self.auth_modules} {STOCK_AUTH_MODULES} && "
                  f"exec {DOVECOT} -F -c {self.dovecot_conf}")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 20
        for port in self.ports.values():
            while True:
                if self.proc.poll() is not None:
                    out = self.proc.stdout.read().decode(errors="replace")
                    raise SetupError(f"dovecot exited at start: {out}\n{self.log_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SetupError(f"dovecot did not listen on {port}\n{self.log_text()}")
                    time.sleep(0.05)
        return self

    def _stop_process(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:
            self.proc.stdout.close()
        self.proc = None

    def restart(self):
        """Stops every Dovecot process and starts afresh on the same ports,
        config and store."""
        self._stop_process()
        return self.start()

    def stop(self):
        self._stop_process()
        if os.environ.get("MAILSUSPEND_KEEP_TMP"):
            print(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- state changes through the built CLI -------------------------
    def cli(self, *argv, check=True):
        res = subprocess.run([self.args.cli, "--config", self.config, *argv],
                             capture_output=True, text=True, timeout=30)
        if check and res.returncode != 0:
            raise AssertionError(f"mailsuspend {' '.join(argv)} failed "
                                 f"({res.returncode}): {res.stdout}{res.stderr}")
        return res

    def suspend(self, target, services, *extra):
        return self.cli("suspend", target, "--service", services, *extra)

    def unsuspend(self, target, *extra):
        return self.cli("unsuspend", target, *extra)

    # -- clients ------------------------------------------------------
    def imap(self, source="127.0.0.1"):
        return LineClient(self.ports["imap"], source).expect_prefix("* OK")

    def pop3(self, source="127.0.0.1"):
        return LineClient(self.ports["pop3"], source).expect_prefix("+OK")

    def sieve(self, source="127.0.0.1"):
        c = LineClient(self.ports["sieve"], source)
        c.read_until(lambda line: line.startswith("OK"))
        return c

    def imap_login(self, user, password=PASSWORD, source="127.0.0.1"):
        """The tagged reply to LOGIN, and the connection."""
        c = self.imap(source)
        c.send(f'a LOGIN "{user}" "{password}"')
        return c.read_tagged("a"), c

    def imap_cram_md5(self, user, password=PASSWORD, source="127.0.0.1"):
        """AUTHENTICATE CRAM-MD5 (the passdb's lookup_credentials path)."""
        c = self.imap(source)
        c.send("a AUTHENTICATE CRAM-MD5")
        challenge = base64.b64decode(c.read_line()[2:])
        digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
        c.send(base64.b64encode(f"{user} {digest}".encode()).decode())
        return c.read_tagged("a"), c

    def pop3_login(self, user, password=PASSWORD, source="127.0.0.1"):
        """The reply to PASS, and the connection."""
        c = self.pop3(source)
        c.send(f"USER {user}")
        c.expect_prefix("+OK")
        c.send(f"PASS {password}")
        return c.read_line(), c

    def imap_plain(self, user, password=PASSWORD, authzid="", source="127.0.0.1"):
        """AUTHENTICATE PLAIN (initial response); authzid: log in as that
        user with a master user's credentials."""
        c = self.imap(source)
        token = base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()
        c.send(f"a AUTHENTICATE PLAIN {token}")
        return c.read_tagged("a"), c

    def sieve_login(self, user, password=PASSWORD, source="127.0.0.1", authzid=""):
        c = self.sieve(source)
        token = base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()
        c.send(f'AUTHENTICATE "PLAIN" "{token}"')
        return c.read_until(lambda l: l.startswith(("OK", "NO", "BYE"))), c


class LineClient:
    """A CRLF line client bound to a chosen loopback source address."""

    def __init__(self, port, source="127.0.0.1"):
        self.sock = socket.create_connection(("127.0.0.1", port), CLIENT_TIMEOUT,
                                             source_address=(source, 0))
        self.file = self.sock.makefile("rb")
        self.transcript = []

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, line):
        self.transcript.append("C: " + line)
        self.sock.sendall(line.encode() + b"\r\n")

    def read_line(self, timeout=CLIENT_TIMEOUT):
        """One line without CRLF; None at end of connection."""
        self.sock.settimeout(timeout)
        raw = self.file.readline()
        if not raw:
            self.transcript.append("S: <closed>")
            return None
        line = raw.decode(errors="replace").rstrip("\r\n")
        self.transcript.append("S: " + line)
        return line

    def read_until(self, pred, timeout=CLIENT_TIMEOUT):
        while True:
            line = self.read_line(timeout)
            if line is None:
                raise AssertionError("connection closed; transcript:\n" +
                                     "\n".join(self.transcript))
            if pred(line):
                return line

    def read_tagged(self, tag):
        return self.read_until(lambda l: l.startswith(tag + " "))

    def expect_prefix(self, prefix):
        line = self.read_line()
        if line is None or not line.startswith(prefix):
            raise AssertionError(f"expected {prefix!r}, got {line!r}; transcript:\n"
                                 + "\n".join(self.transcript))
        return self

    def closed_after(self, timeout=CLIENT_TIMEOUT):
        """Reads what is left; returns the lines if the server closed the
        connection, raises if it stays open longer than timeout."""
        lines = []
        while True:
            try:
                line = self.read_line(timeout)
            except socket.timeout:
                raise AssertionError("connection still open; transcript:\n"
                                     + "\n".join(self.transcript))
            except ConnectionResetError:
                return lines
            if line is None:
                return lines
            lines.append(line)
