"""`mailsuspend doctor` against real configs of the real Debian dovecot and
exim4: passes (exit 0) on the shipped snippets with the default groups, and
each deliberately broken installation fails its own check with its message.

The configs come from the Dovecot and Exim test harnesses (shipped snippets,
default store groups, only ports and paths changed).  doctor reads them with
the servers' own tools (doveconf -c, exim4 -C -bP/-bV/-bt/-bs), which need no
running server, so none is started.  Both servers share one mailsuspend.conf
(Exim's), as on a real host.  Run as root; nothing skips.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "dovecot"))
sys.path.insert(0, os.path.join(HERE, "..", "exim"))
import eximtest  # noqa: E402
import harness  # noqa: E402

ARGS = None  # set by main()
DEBIAN_RETRY = "*   *   F,2h,15m; G,16h,1h,1.5; F,4d,6h"
TEST_RETRY = "*   *   F,10d,1h"
AUTH_EXTRA_GROUPS = "service auth {\n  extra_groups = mailsuspend\n}\n"


class Installation:
    """One Exim config, one Dovecot config and one mailsuspend.conf + store,
    with the sweep timer and the recovery unit enabled in a private unit root
    (this machine's systemd is not ours to change)."""

    def __init__(self, continue_ok=True, exim_options=None):
        self.exim = eximtest.Env("doctor", **(exim_options or {}))
        self.dovecot = harness.Dovecot(ARGS.dovecot, continue_ok=continue_ok, create_store=False)
        # One mailsuspend.conf for both servers: point the Dovecot snippet at Exim's.
        self.dovecot_snippet = os.path.join(self.dovecot.tmp, "95-mailsuspend.conf")
        self.edit(self.dovecot_snippet, self.dovecot.config, self.exim.ms_conf)
        self.groups_include = "!include_try " + os.path.join(self.exim.dir, "store", "dovecot-groups.conf")
        self.edit(self.dovecot_snippet, "!include_try " + os.path.join(self.dovecot.tmp, "store", "dovecot-groups.conf"),
                  self.groups_include)
        self.config = self.exim.ms_conf
        self.units = tempfile.mkdtemp(prefix="ms-doctor-units-")
        for target, unit in (("timers.target", "mailsuspend-sweep.timer"),
                             ("multi-user.target", "mailsuspend-recover.service")):
            wants = os.path.join(self.units, "etc/systemd/system", target + ".wants")
            os.makedirs(wants)
            os.symlink(os.path.join(ARGS.units, unit), os.path.join(wants, unit))

    def close(self):
        self.exim.stop()
        self.dovecot.stop()
        shutil.rmtree(self.units, ignore_errors=True)

    @staticmethod
    def edit(path, old, new):
        with open(path) as f:
            text = f.read()
        if old not in text:
            raise AssertionError(f"{path} does not contain {old!r}")
        with open(path, "w") as f:
            f.write(text.replace(old, new))

    def doctor(self, *extra):
        """(exit status, {check name: check}, the raw output)."""
        argv = [ARGS.cli, "--config", self.config, "doctor", "--json",
                "--dovecot-config", self.dovecot.dovecot_conf,
                "--exim-config", self.exim.conf, "--exim-binary", self.exim.exim_bin,
                "--unit-root", self.units, *extra]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=self.exim.env)
        try:
            checks = {c["name"]: c for c in json.loads(proc.stdout)}
        except ValueError:
            raise AssertionError(f"doctor printed no JSON ({proc.returncode}): {proc.stdout}{proc.stderr}")
        return proc.returncode, checks, proc.stdout + proc.stderr


class DoctorTestCase(unittest.TestCase):
    continue_ok = True
    exim_options = None

    def setUp(self):
        self.inst = Installation(continue_ok=self.continue_ok, exim_options=self.exim_options)

    def tearDown(self):
        self.inst.close()

    def assertCheckFails(self, name, pattern):
        """doctor exits 1; check name fails with a problem matching pattern and a fix."""
        rc, checks, out = self.inst.doctor()
        self.assertEqual(rc, 1, out)
        self.assertIn(name, checks, out)
        c = checks[name]
        self.assertFalse(c["ok"], out)
        self.assertRegex(c["problem"], pattern, out)
        self.assertTrue(c["fix"], out)
        return checks


class Shipped(DoctorTestCase):
    def test_passes_on_the_shipped_configuration(self):
        rc, checks, out = self.inst.doctor()
        failed = [c for c in checks.values() if not c["ok"]]
        self.assertEqual(failed, [], out)
        self.assertEqual(rc, 0, out)
        for name in ("config", "store", "dovecot_auth_access", "dovecot_mail_access", "exim_access",
                     "dovecot_passdb", "dovecot_plugins", "exim_wiring", "exim_routers", "exim_build",
                     "exim_retry", "exim_events", "sweep_timer", "recover_unit", "probe_exim_receive",
                     "probe_exim_send", "probe_dovecot_login", "dovecot_auth_logins"):
            self.assertIn(name, checks, out)
        # The proofs name what they saw.
        self.assertIn("Debian-exim", checks["exim_access"]["detail"])
        self.assertRegex(checks["dovecot_auth_access"]["detail"], r"user dovecot.*mailsuspend")
        self.assertIn("5.7.13", checks["probe_exim_send"]["detail"])
        self.assertIn("Not proven", checks["probe_dovecot_login"]["detail"])
        # The probe is lifted afterwards, and audited with actor "doctor".
        status = self.inst.exim.cli("status", "mailsuspend-probe@probe.invalid", "--json")
        self.assertFalse(any(s["suspended"] for s in json.loads(status.stdout)["services"].values()))
        with open(os.path.join(self.inst.exim.dir, "audit.log")) as f:
            self.assertIn('"doctor"', f.read())

    def test_text_output_names_each_problem_and_its_fix(self):
        self.inst.edit(self.inst.exim.conf, TEST_RETRY, DEBIAN_RETRY)
        proc = subprocess.run([ARGS.cli, "--config", self.inst.config, "doctor",
                               "--dovecot-config", self.inst.dovecot.dovecot_conf,
                               "--exim-config", self.inst.exim.conf, "--unit-root", self.inst.units],
                              capture_output=True, text=True, timeout=120, env=self.inst.exim.env)
        self.assertEqual(proc.returncode, 1, proc.stdout)
        self.assertRegex(proc.stdout, r"FAIL  exim_retry: .*gives up after 4d.*\n      fix: ")
        self.assertRegex(proc.stdout, r"ok    exim_routers: ")

    def test_bad_usage_exits_2(self):
        proc = subprocess.run([ARGS.cli, "doctor", "--no-such-option"], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 2, proc.stderr)


class MissingContinueOk(DoctorTestCase):
    continue_ok = False  # the one README edit outside the snippet, left out

    def test_passdb_chain_not_reaching_mailsuspend(self):
        self.assertCheckFails("dovecot_passdb",
                             r"passdb \{ driver = passwd-file.*ends a successful login.*the default")


class Broken(DoctorTestCase):
    def test_auth_process_without_extra_groups_cannot_read_the_store(self):
        self.inst.edit(self.inst.dovecot_snippet, AUTH_EXTRA_GROUPS, "")
        checks = self.assertCheckFails("dovecot_auth_access",
                                      r"Dovecot's auth process \(user dovecot, group dovecot, no supplementary "
                                      r"groups\) cannot open .*store/store: Permission denied")
        self.assertIn("extra_groups = mailsuspend", checks["dovecot_auth_access"]["fix"])
        # The live probe shows the consequence: fail policy instead of a denial.
        self.assertFalse(checks["probe_dovecot_login"]["ok"])

    def test_passdb_without_auth_verbose_does_not_log_denials(self):
        self.inst.edit(self.inst.dovecot_snippet, "  auth_verbose = yes\n", "")
        checks = self.assertCheckFails("dovecot_passdb", r"login denials are not logged")
        self.assertIn("auth_verbose = yes", checks["dovecot_passdb"]["fix"])

    def test_mail_processes_without_mail_access_groups(self):
        self.inst.edit(self.inst.dovecot_snippet, "mail_access_groups = mailsuspend", "")
        self.inst.edit(self.inst.dovecot_snippet, self.inst.groups_include, "")  # the same group by number
        self.assertCheckFails("dovecot_mail_access", r"Permission denied")

    def test_mail_processes_with_a_stale_group_number(self):
        # The group renumbered after `mailsuspend init` wrote its number.
        with open(os.path.join(self.inst.exim.dir, "store", "dovecot-groups.conf"), "w") as f:
            f.write("mail_access_groups = 54321\n")
        checks = self.assertCheckFails("dovecot_mail_access", r"Permission denied")
        self.assertIn("`mailsuspend init` writes the group's current one", checks["dovecot_mail_access"]["fix"])

    def test_exim_with_local_scan_path_but_without_the_routers(self):
        self.inst.edit(self.inst.exim.conf,
                       f".include {eximtest.PATHS['snippets']}/mailsuspend-routers", "")
        checks = self.assertCheckFails("exim_routers", r"no mailsuspend_receive router.*discard or queue mode")
        self.assertTrue(checks["exim_wiring"]["ok"], checks["exim_wiring"])
        self.assertFalse(checks["probe_exim_receive"]["ok"])

    def test_a_forwarder_router_before_the_mailsuspend_routers(self):
        include = f".include {eximtest.PATHS['snippets']}/mailsuspend-routers"
        forwarder = ("early_forward:\n  driver = redirect\n  local_parts = forwarder\n"
                     "  data = forward-target@example.com\n\n")
        self.inst.edit(self.inst.exim.conf, include, forwarder + include)
        self.assertCheckFails("exim_routers", r"router early_forward \(driver redirect\) comes before")

    def test_mail_acl_not_wired(self):
        self.inst.edit(self.inst.exim.conf, "acl_smtp_mail = MAIN_ACL_CHECK_MAIL",
                       "acl_smtp_mail = acl_check_mail")
        checks = self.assertCheckFails("exim_wiring", r"acl_smtp_mail = acl_check_mail does not run mailsuspend")
        self.assertFalse(checks["probe_exim_send"]["ok"])

    def test_rcpt_acl_not_wired(self):
        self.inst.edit(self.inst.exim.conf, "acl_smtp_rcpt = MAIN_ACL_CHECK_RCPT",
                       "acl_smtp_rcpt = acl_check_rcpt")
        self.assertCheckFails("exim_wiring", r"acl_smtp_rcpt = acl_check_rcpt does not run mailsuspend")

    def test_no_local_scan_path(self):
        self.inst.edit(self.inst.exim.conf, f".include {eximtest.PATHS['snippets']}/mailsuspend-main\n", "")
        # The snippet's macros go with it; the rest of the test config names them.
        self.inst.edit(self.inst.exim.conf, "acl_smtp_mail = MAIN_ACL_CHECK_MAIL", "acl_smtp_mail = acl_check_mail")
        self.inst.edit(self.inst.exim.conf, "acl_smtp_rcpt = MAIN_ACL_CHECK_RCPT", "acl_smtp_rcpt = acl_check_rcpt")
        self.assertCheckFails("exim_wiring", r"local_scan_path is not set")

    def test_retry_gives_up_before_queue_expiry(self):
        # Debian's stock retry rule (gives up after 4d) against the default queue_expiry (4d8h).
        self.inst.edit(self.inst.exim.conf, TEST_RETRY, DEBIAN_RETRY)
        self.assertCheckFails("exim_retry", r"gives up after 4d, not later than delivery.queue_expiry \(4d8h\)")

    def test_failed_share_on_with_and_without_the_transport_event_action(self):
        with open(self.inst.config, "a") as f:
            f.write("limits: { failed_share_percent = 30; };\n")
        rc, checks, out = self.inst.doctor()
        self.assertTrue(checks["exim_events"]["ok"], out)  # the harness's remote_smtp has the lines
        self.inst.edit(self.inst.exim.conf, "  event_action = MAILSUSPEND_EVENT_ACTION\n", "")
        checks = self.assertCheckFails("exim_events", r"smtp transport remote_smtp has no event_action")
        self.assertIn("MAILSUSPEND_EVENT_ACTION", checks["exim_events"]["fix"])

    def test_bad_config(self):
        with open(self.inst.config, "a") as f:
            f.write("store: { capacity = \"many\"; };\n")
        checks = self.assertCheckFails("config", r"mailsuspend.conf:\d+: ")
        self.assertRegex(checks["config"]["fix"], r"at the line named")

    def test_unknown_key(self):
        with open(self.inst.config, "a") as f:
            f.write("doctor: { probe = \"x@y.z\"; };\n")
        self.assertCheckFails("config", r"doctor.probe: unknown setting")

    def test_missing_store(self):
        shutil.rmtree(os.path.join(self.inst.exim.dir, "store"))
        checks = self.assertCheckFails("store", r".")
        self.assertIn("mailsuspend init", checks["store"]["fix"])

    def test_login_tables_missing_with_the_login_ip_limit_on(self):
        for name in ("logins", "login-counters"):
            os.unlink(os.path.join(self.inst.exim.dir, "store", name))
        rc, checks, out = self.inst.doctor()
        self.assertTrue(checks["dovecot_auth_logins"]["ok"], out)  # the limit is off: a note only
        self.assertIn("login_ips_per_day is off", checks["dovecot_auth_logins"]["detail"])
        with open(self.inst.config, "a") as f:
            f.write("limits: { login_ips_per_day = 50; };\n")
        checks = self.assertCheckFails("dovecot_auth_logins",
                                      r"Dovecot's auth process \(user dovecot.*cannot open .*store/logins")
        self.assertIn("mailsuspend init", checks["dovecot_auth_logins"]["fix"])
        self.inst.exim.cli("init")
        rc, checks, out = self.inst.doctor()
        self.assertTrue(checks["dovecot_auth_logins"]["ok"], out)

    def test_timers_not_enabled(self):
        os.unlink(os.path.join(self.inst.units, "etc/systemd/system/timers.target.wants/mailsuspend-sweep.timer"))
        checks = self.assertCheckFails("sweep_timer", r"mailsuspend-sweep.timer is not enabled")
        self.assertEqual(checks["sweep_timer"]["fix"], "systemctl enable --now mailsuspend-sweep.timer")
        self.assertTrue(checks["recover_unit"]["ok"])


def light_binary():
    """Debian's real exim4-daemon-light, unpacked next to the build as test_light does."""
    target = os.path.join(os.path.dirname(eximtest.PATHS["so"]), "exim4-daemon-light")
    proc = subprocess.run([os.path.join(HERE, "..", "exim", "fetch-exim-light.sh"), target],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        eximtest.fail_setup("cannot unpack exim4-daemon-light with apt-get download:\n" + proc.stderr)
    return proc.stdout.strip()


class Light(DoctorTestCase):
    """exim4-daemon-light with the light snippet: a supported installation, so
    doctor passes, and says what light cannot enforce and what it cannot prove."""

    def setUp(self):
        self.exim_options = {"light": True, "exim": light_binary()}
        super().setUp()

    def test_light_passes_and_names_its_limits(self):
        rc, checks, out = self.inst.doctor()
        self.assertEqual(rc, 0, out)
        self.assertRegex(checks["exim_build"]["detail"], r"^light .*Not enforced with light: send refusals at MAIL FROM")
        self.assertIn("exim4-daemon-heavy", checks["exim_build"]["detail"])
        self.assertIn("not proven with light", checks["probe_exim_receive"]["detail"])
        self.assertIn("not proven with light", checks["probe_exim_send"]["detail"])


class RunningDovecot(DoctorTestCase):
    """The auth process that runs now is checked with the ids the kernel shows
    for it: a config fixed without restarting Dovecot is caught."""

    def start_and_login(self):
        self.inst.dovecot.start()
        reply, client = self.inst.dovecot.imap_login("alice@example.com")
        client.close()
        self.assertIn("OK", reply)

    def test_running_auth_process_passes(self):
        self.start_and_login()
        rc, checks, out = self.inst.doctor()
        self.assertEqual(rc, 0, out)
        self.assertRegex(checks["dovecot_auth_running"]["detail"], r"^1 running auth process")

    def test_extra_groups_added_without_restart(self):
        self.inst.edit(self.inst.dovecot_snippet, AUTH_EXTRA_GROUPS, "")
        self.start_and_login()
        with open(self.inst.dovecot_snippet, "a") as f:
            f.write(AUTH_EXTRA_GROUPS)  # the config is fixed, the running process is not
        # Dovecot gives its processes their primary group as the only supplementary one.
        checks = self.assertCheckFails("dovecot_auth_running",
                                       r"the running Dovecot auth process \(pid \d+\) \(user dovecot, group "
                                       r"dovecot, supplementary groups dovecot\) cannot open .*Permission denied")
        self.assertTrue(checks["dovecot_auth_access"]["ok"], checks["dovecot_auth_access"])
        self.assertIn("systemctl restart dovecot", checks["dovecot_auth_running"]["fix"])


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--cli", required=True)
    parser.add_argument("--so", required=True)
    parser.add_argument("--exim-snippets", required=True)
    parser.add_argument("--modules", required=True)
    parser.add_argument("--dovecot-snippet", required=True)
    parser.add_argument("--units", required=True)
    args, rest = parser.parse_known_args()
    eximtest.PATHS.update(cli=args.cli, so=args.so, snippets=args.exim_snippets)
    args.dovecot = argparse.Namespace(cli=args.cli, modules=args.modules, snippet=args.dovecot_snippet)
    harness.require_prerequisites(args.dovecot)
    ARGS = args
    unittest.main(module="__main__", argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
