#!/usr/bin/env python3
"""mailsuspend.so against the real exim4 binary: it exports only Exim's
entry points, needs nothing Debian's exim4 does not export, loads as
local_scan, and its ${dlfunc} functions answer and refuse bad arguments."""
import glob
import os
import re
import subprocess
import unittest

import eximtest
from eximtest import PATHS, EXIM, EximTestCase

ENTRY_POINTS = {"local_scan", "local_scan_version_major", "local_scan_version_minor",
                "mailsuspend_ping", "mailsuspend_preload", "mailsuspend_send", "mailsuspend_rcpt",
                "mailsuspend_route", "mailsuspend_queued", "mailsuspend_counts_unknown",
                "mailsuspend_unknown_rcpt", "mailsuspend_counts_outcomes", "mailsuspend_outcome",
                "mailsuspend_held"}


def dynamic_symbols(path, defined):
    flag = "--defined-only" if defined else "--undefined-only"
    out = subprocess.run(["nm", "-D", flag, path], capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if not parts:
            continue
        kind, name = parts[-2], parts[-1]
        if not defined and kind in ("w",):
            continue  # weak: may stay unresolved
        names.add(name.split("@")[0])
    return names


def needed_libraries(path):
    """The libraries ldd resolves, and the dynamic loader (its own line, no "=>"):
    the C++ runtime linked into the module takes __tls_get_addr from it."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    return [m.group(1) for m in re.finditer(r"(?:=> |^\s+)(/\S+)", out, re.M)]


def send_accepted(case, count, subject):
    """count submissions through case's daemon, each accepted; returns when Exim is idle."""
    for i in range(count):
        out = case.env.send("sender@example.com", ["zed@example.com"], user="sender@example.com",
                            subject=f"{subject} {i}")
        case.assertEqual(out.data[0], 250, out)
    case.env.wait_idle()


class SymbolsTest(unittest.TestCase):
    def test_exports_only_the_entry_points(self):
        exported = {n for n in dynamic_symbols(PATHS["so"], True)
                    if not n.startswith("_") and n not in ("")}
        self.assertEqual(exported, ENTRY_POINTS)

    def test_needs_only_what_exim_exports(self):
        undefined = dynamic_symbols(PATHS["so"], False)
        for lib in needed_libraries(PATHS["so"]):
            undefined -= dynamic_symbols(lib, True)
        from_exim = dynamic_symbols(EXIM, True)
        self.assertTrue(undefined, "expected to use some of Exim's API")
        self.assertEqual(undefined - from_exim, set(),
                         "symbols neither in a needed library nor exported by exim4")
        # Symbols Debian's exim4 does not export (the .so would not load) must never creep in.
        for bad in ("child_open_exim", "child_open_exim_function", "authenticated_id",
                    "originator_uid", "deliver_freeze", "queue_only_policy"):
            self.assertNotIn(bad, undefined)

    def test_needs_no_shared_library_beyond_libc_and_libconfig(self):
        # A fresh Exim process (local submission, delivery) maps and relocates
        # every library the module brings: the C++ runtime and libsodium are
        # linked in (issue 14; bench/results/2026-12-04-token.md).
        names = {os.path.basename(p) for p in needed_libraries(PATHS["so"])}
        self.assertEqual(names - {"libc.so.6", "libconfig.so.9", "ld-linux-x86-64.so.2"}, set())


def section(path, name):
    """(address, size) of the section called name, or None."""
    out = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout
    m = re.search(r"\]\s+" + re.escape(name) + r"\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", out)
    return (int(m.group(1), 16), int(m.group(2), 16)) if m else None


def symbol_addresses(path):
    out = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
    return {parts[2]: int(parts[0], 16) for parts in (line.split() for line in out.splitlines())
            if len(parts) == 3 and parts[1] in "tT"}


class LayoutTest(unittest.TestCase):
    def test_what_a_message_runs_lies_together(self):
        # hot-message.ld gathers the functions an SMTP message runs ahead of
        # .text: a receiver the daemon forks faults once per 64 KiB window of
        # the module's code it runs (bench/hot_sections.py).
        hot = section(PATHS["so"], ".text.hot_message")
        self.assertIsNotNone(hot, "no .text.hot_message: hot-message.ld was not applied")
        start, size = hot
        self.assertLess(size, 64 * 1024)
        addresses = symbol_addresses(PATHS["so"])
        for name in ("local_scan", "mailsuspend_send", "mailsuspend_rcpt", "mailsuspend_check_send",
                     "mailsuspend_count_message", "ms_probe_keys", "ms_hash_key"):
            self.assertIn(name, addresses)
            self.assertTrue(start <= addresses[name] < start + size, f"{name} is not in .text.hot_message")


class LoadTest(EximTestCase):
    daemon = False

    def test_local_scan_loads_and_accepts(self):
        out = self.env.local_smtp("sender@example.com", ["zed@example.com"], subject="load")
        self.assertEqual(out.data[0], 250, out)
        self.assertEqual(len(self.env.mailbox("zed@example.com")), 1)
        self.assertFalse(self.env.log_lines(r"local_scan.*(fail|error|cannot)"))

    def test_dlfunc_answers(self):
        out = self.env.exim("-be", f"${{dlfunc{{{PATHS['so']}}}{{mailsuspend_ping}}}}").stdout
        self.assertEqual(out.strip(), "pong")

    def test_dlfunc_with_wrong_arguments_is_a_clear_error(self):
        out = self.env.exim("-be", f"${{dlfunc{{{PATHS['so']}}}{{mailsuspend_send}}{{x}}{{y}}}}",
                            check=False)
        self.assertIn("mailsuspend_send expects {config}", out.stdout + out.stderr)

    def test_dlfunc_bad_input_is_answered_not_crashed(self):
        so, conf = PATHS["so"], self.env.ms_conf
        # 3000 octets of local part, built by Exim (its input lines are short).
        long_address = "${sg{${sg{XXXXXXXXXX}{X}{YYYYYYYYYY}}}{Y}{" + "a" * 30 + "}}@example.com"
        cases = [
            (f"[${{dlfunc{{{so}}}{{mailsuspend_rcpt}}{{{conf}}}{{}}}}]", "[]"),
            (f"[${{dlfunc{{{so}}}{{mailsuspend_rcpt}}{{{conf}}}{{{long_address}}}}}]", "[]"),
            (f"[${{dlfunc{{{so}}}{{mailsuspend_rcpt}}{{{conf}}}{{\"quoted local\"@x}}}}]", "[]"),
            (f"[${{dlfunc{{{so}}}{{mailsuspend_send}}{{{conf}}}{{}}{{@@@}}{{not-an-ip}}}}]", "[]"),
            (f"[${{dlfunc{{{so}}}{{mailsuspend_send}}{{/nonexistent.conf}}{{a@b.c}}{{a@b.c}}{{}}}}]", "[]"),
        ]
        for expr, expected in cases:
            # On stdin: exim's command line limits arguments to 256 octets.
            out = self.env.exim("-be", input=expr + "\n", check=False)
            self.assertEqual(out.returncode, 0, expr[:200] + out.stderr)
            self.assertEqual(out.stdout.replace(">", "").strip(), expected, expr[:200])
        # The router entry point declines (forced failure) for anything it
        # cannot judge, e.g. a non-numeric age.
        out = self.env.exim("-be", f"${{dlfunc{{{so}}}{{mailsuspend_route}}{{{conf}}}{{zed@example.com}}{{abc}}}}",
                            check=False)
        self.assertEqual(out.stdout.strip(), "Failed:", out.stdout + out.stderr)  # -be's forced failure
        self.assertEqual(self.env.panic_log(), "")

    def test_dlfunc_send_check_still_takes_the_sender_as_arguments(self):
        # The form snippets had before the sender was read from the message
        # (a split config keeps a copy): {config}{auth id}{sender}{client}.
        self.env.cli("suspend", "copied-snippet@example.com", "--service", "send")
        expr = (f"[${{dlfunc{{{PATHS['so']}}}{{mailsuspend_send}}{{{self.env.ms_conf}}}"
                f"{{copied-snippet@example.com}}{{copied-snippet@example.com}}{{127.0.0.1}}}}]")
        out = self.env.exim("-be", expr).stdout.strip()
        self.assertIn("suspended", out)
        self.assertNotEqual(out, "[]")

    def test_dlfunc_send_check_allows_unsuspended(self):
        expr = (f"[${{dlfunc{{{PATHS['so']}}}{{mailsuspend_send}}{{{self.env.ms_conf}}}"
                f"{{zed@example.com}}{{zed@example.com}}{{127.0.0.1}}}}]")
        self.assertEqual(self.env.exim("-be", expr).stdout.strip(), "[]")


class DaemonPreloadTest(EximTestCase):
    """mailsuspend-main has the daemon load the module and open the store
    (mailsuspend_preload), so connections do not pay for either."""

    def test_daemon_holds_the_module_and_the_store(self):
        env = self.env
        out = env.send("sender@example.com", ["zed@example.com"], user="sender@example.com")
        self.assertEqual(out.data[0], 250, out)
        with open(f"/proc/{env.daemon.pid}/maps") as f:
            maps = f.read()
        self.assertIn(PATHS["so"], maps)
        self.assertIn(os.path.join(env.dir, "store", "store"), maps)


class ReceiverLoadsNothingTest(EximTestCase):
    """The daemon has Exim's local_scan() load the module once
    (load_local_scan_in_daemon), so the processes it forks for connections
    do not load it again for their message.  Seen through the dynamic
    linker's own trace: loading local_scan_path looks up
    local_scan_version_major in the module, and each trace line carries the
    process id."""

    @classmethod
    def prepare(cls):
        cls.trace = os.path.join(cls.env.dir, "ld-trace")
        cls.env.env.update(LD_DEBUG="symbols", LD_DEBUG_OUTPUT=cls.trace)

    def lookups_by_process(self):
        by_pid = {}
        for path in glob.glob(self.trace + ".*"):
            with open(path, errors="replace") as f:
                for line in f:
                    if "symbol=local_scan_version_major;" in line:
                        pid = line.split(":", 1)[0].strip()
                        by_pid[pid] = by_pid.get(pid, 0) + 1
        return by_pid

    def test_only_the_daemon_loads_local_scan(self):
        send_accepted(self, 2, "trace")
        by_pid = self.lookups_by_process()
        self.assertEqual(list(by_pid), [str(self.env.daemon.pid)],
                         f"local_scan loaded by processes other than the daemon: {by_pid}")


class LazyBindingTest(EximTestCase):
    """The module is bound lazily (a fresh Exim process binds only what it
    runs), and the daemon binds what a message runs before it forks
    (bind_message_path), so a process forked for a connection binds nothing
    of the module's: each binding there would walk Exim's libraries again and
    fault in pages of their symbol tables, for every message.  Seen through
    the dynamic linker's trace of each binding, which names the process; a
    ${dlfunc} call's own look-up of its entry point (Exim's dlsym, the same
    whatever the binding) is not a binding of an import."""

    @classmethod
    def prepare(cls):
        cls.trace = os.path.join(cls.env.dir, "ld-bindings")
        cls.env.env.update(LD_DEBUG="bindings", LD_DEBUG_OUTPUT=cls.trace)

    def imports_bound_by_forks(self):
        so = re.escape(PATHS["so"])
        binding = re.compile(rf"^\s*(\d+):\s+binding file {so} \[0\] to (\S+) \[0\]: normal symbol `([^']+)'")
        bound = []
        for path in glob.glob(self.trace + ".*"):
            with open(path, errors="replace") as f:
                for line in f:
                    m = binding.match(line)
                    if m and m.group(1) != str(self.env.daemon.pid) and m.group(2) != PATHS["so"]:
                        bound.append(f"{m.group(3)} (from {m.group(2)}, process {m.group(1)})")
        return bound

    def test_a_forked_receiver_binds_nothing(self):
        env = self.env
        flags = subprocess.run(["readelf", "-d", PATHS["so"]], capture_output=True, text=True, check=True).stdout
        self.assertNotIn("BIND_NOW", flags, "the module is meant to be bound lazily (exim-local-scan/CMakeLists.txt)")
        # Inbound mail, and a submission that gets the sender token header.
        out = env.send("someone@example.net", ["zed@example.com"])
        self.assertEqual(out.data[0], 250, out)
        out = env.send("sender@example.com", ["zed@example.com"], user="sender@example.com")
        self.assertEqual(out.data[0], 250, out)
        env.wait_idle()
        with open(f"/proc/{env.daemon.pid}/maps") as f:
            self.assertIn(PATHS["so"], f.read(), "the daemon did not preload the module")
        self.assertEqual(self.imports_bound_by_forks(), [],
                         "a process forked for a connection bound these (bind them in the daemon: "
                         "bind_message_path in exim-local-scan/src/module.cpp)")


class OtherLocalScanTest(EximTestCase):
    """An admin who runs another local_scan (sa-exim, say) keeps mailsuspend's
    ACLs and routers, so the daemon still loads mailsuspend.so for them.  Its
    load of local_scan_path in the daemon (load_local_scan_in_daemon) calls
    Exim's local_scan() with no message; that must happen only when
    local_scan_path names mailsuspend.so, never to another module, which
    would take the missing message for one."""

    @classmethod
    def prepare(cls):
        other = PATHS.get("other_local_scan")
        if not other or not os.path.isfile(other):
            eximtest.fail_setup(f"--other-local-scan: no module at {other!r} (built as tests/exim/other_local_scan.so)")
        # The one change to the shipped snippet: local_scan_path names the other module.
        shipped = os.path.join(PATHS["snippets"], "mailsuspend-main")
        with open(shipped) as f:
            text = f.read()
        line = "local_scan_path = MAILSUSPEND_SO"
        if line not in text:
            eximtest.fail_setup(f"{shipped} no longer has {line!r}")
        changed = os.path.join(cls.env.dir, "mailsuspend-main")
        with open(changed, "w") as f:
            f.write(text.replace(line, f"local_scan_path = {other}"))
        with open(cls.env.conf) as f:
            conf = f.read()
        if f".include {shipped}\n" not in conf:
            eximtest.fail_setup(f"{cls.env.conf} does not include {shipped}")
        with open(cls.env.conf, "w") as f:
            f.write(conf.replace(f".include {shipped}\n", f".include {changed}\n"))

    def test_the_other_local_scan_only_gets_messages(self):
        send_accepted(self, 2, "other")
        # The ACLs ran mailsuspend.so in this daemon; the other module had the messages.
        with open(f"/proc/{self.env.daemon.pid}/maps") as f:
            self.assertIn(PATHS["so"], f.read())
        self.assertEqual(len(self.env.log_lines(r"other local_scan: data fd open")), 2, self.env.mainlog())
        self.assertEqual(self.env.log_lines(r"other local_scan: data fd missing"), [])


if __name__ == "__main__":
    eximtest.main()
