#!/usr/bin/env python3
"""Keeps the man pages and the bash completion true to the code (issue 11 item 5).

- Every command the built CLI lists in `mailsuspend --help`, and every option
  its `mailsuspend COMMAND --help` lists, is documented in man/mailsuspend.8
  under that command, and the bash completion offers exactly those options
  for it (run through bash-completion, as an admin's shell would).
- The completion offers the service names and delivery modes of
  common/rules/model.cpp for --service, --mode and set-mode.
- Every config key of common/rules/config.cpp's key table (each group's
  only_keys list) has an entry in man/mailsuspend.conf.5, with the default
  that conf/mailsuspend.conf shows.
- Both pages render without a groff warning, as lintian checks them.

Usage: test_docs.py MAILSUSPEND_BINARY SOURCE_DIR
"""
import os
import re
import subprocess
import sys
import unittest

CLI = SOURCE = None
# CLI11's help options: global, documented once under GLOBAL OPTIONS.
HELP_OPTIONS = {"--help", "--help-all"}


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


def read(path):
    with open(os.path.join(SOURCE, path), encoding="utf-8") as f:
        return f.read()


def help_section(text, title):
    """The first words of the lines of one section of CLI11's help ("Subcommands:")."""
    lines, inside = [], False
    for line in text.splitlines():
        if re.match(r"^\S.*:$", line):
            inside = line == title + ":"
            continue
        if inside and line.startswith("  ") and line.strip():
            lines.append(line.strip())
    return lines


def cli_commands():
    r = run([CLI, "--help"])
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in help_section(r.stdout, "Subcommands")]
    assert len(names) >= 14, r.stdout  # the parse found the list
    return names


def cli_options(command):
    """Long options of one command, from its --help (the names column)."""
    r = run([CLI, command, "--help"])
    assert r.returncode == 0, (command, r.stderr)
    options = set()
    for line in help_section(r.stdout, "Options"):
        if line.startswith("-"):
            for name in line.split()[0].split(","):
                if name.startswith("--"):
                    options.add(name.split("=")[0])
    assert "--help" in options, (command, r.stdout)
    return options - HELP_OPTIONS


def unroff(text):
    """Roff source to plain words: font escapes dropped, \\- and \\(dq as typed."""
    text = re.sub(r"\\f[BIRP]|\\f\(..|\\&|\\c", "", text)
    return text.replace("\\-", "-").replace("\\(dq", '"').replace("\\e", "\\")


def man_sections(page):
    """{".SH title": lines} of a man page's source."""
    sections, title = {}, None
    for line in read(page).splitlines():
        if line.startswith(".SH "):
            title = line[4:].strip().strip('"')
            sections[title] = []
        elif title:
            sections[title].append(line)
    return sections


def tagged_entries(lines):
    """Top-level .TP/.TQ entries of a section: [(tag, body)] (nested .RS lists stay in the body)."""
    entries, depth, expect_tag = [], 0, False
    for line in lines:
        if line.startswith(".RS"):
            depth += 1
        elif line.startswith(".RE"):
            depth -= 1
        if depth == 0 and line.startswith((".TP", ".TQ")):
            expect_tag = True
            continue
        if expect_tag and not line.startswith(".\\\""):
            entries.append([unroff(re.sub(r"^\.(B|I|BR|BI|IR|RB|RI|IB)\s+", "", line)), ""])
            expect_tag = False
            continue
        if entries:
            entries[-1][1] += unroff(line) + "\n"
    return entries


def command_docs():
    """{command: text of its entry (all its .TQ alternatives)} in mailsuspend.8's COMMANDS."""
    docs = {}
    for tag, body in tagged_entries(man_sections("man/mailsuspend.8")["COMMANDS"]):
        name = tag.split()[0]
        docs[name] = docs.get(name, "") + tag + "\n" + body
    return docs


def config_keys():
    """["store.path", ...] from config.cpp's key table: each read_GROUP's only_keys(g, {...})."""
    source = read("common/rules/config.cpp")
    root = re.search(r"only_keys\(root,\s*\{([^}]*)\}", source)
    assert root, "config.cpp: the root only_keys list is gone: update this test"
    groups = re.findall(r'"(\w+)"', root.group(1))
    keys = []
    for group in groups:
        body = re.search(r"void read_%s\(Reader& r, Setting g, Config& c\) \{(.*?)\n\}" % group, source, re.S)
        assert body, "config.cpp: no read_%s(Reader& r, Setting g, Config& c): update this test" % group
        listed = re.search(r"only_keys\(g,\s*\{([^}]*)\}", body.group(1))
        assert listed, "read_%s has no only_keys(g, {...})" % group
        keys += ["%s.%s" % (group, key) for key in re.findall(r'"(\w+)"', listed.group(1))]
    assert len(keys) >= 30, keys
    return keys


def example_defaults():
    """{"store.path": '"/var/lib/mailsuspend"', ...}: the one-line values of conf/mailsuspend.conf."""
    values, group = {}, None
    for line in read("conf/mailsuspend.conf").splitlines():
        line = line.strip()
        if line.startswith("#"):
            continue
        m = re.match(r"^(\w+):\s*\{$", line)
        if m:
            group = m.group(1)
        elif line.startswith("};"):
            group = None
        elif group and (m := re.match(r"^(\w+)\s*=\s*(.*);$", line)):
            values["%s.%s" % (group, m.group(1))] = m.group(2)
    return values


def complete(*words):
    """What bash-completion offers for `mailsuspend WORDS...` (the last word is being typed)."""
    script = """
source /usr/share/bash-completion/bash_completion
source "$1"; shift
COMP_WORDS=(mailsuspend "$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
_mailsuspend
printf '%s\\n' "${COMPREPLY[@]}"
"""
    r = run(["bash", "-c", script, "bash", os.path.join(SOURCE, "completions/mailsuspend")] + list(words))
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def model_names(array):
    m = re.search(r"%s = \{([^}]*)\}" % array, read("common/rules/model.cpp"))
    assert m, "model.cpp: %s is gone: update this test" % array
    return set(re.findall(r'"(\w+)"', m.group(1)))


class ManPage(unittest.TestCase):
    def test_every_command_and_its_options_are_documented_under_it(self):
        docs = command_docs()
        for command in cli_commands():
            with self.subTest(command=command):
                if command not in docs:
                    self.fail("mailsuspend.8 has no COMMANDS entry for '%s'" % command)
                for option in sorted(cli_options(command)):
                    self.assertRegex(docs[command], r"(?<![\w-])%s(?![\w-])" % re.escape(option),
                                     "mailsuspend.8: %s %s is not documented" % (command, option))

    def test_global_options_and_exit_codes(self):
        sections = man_sections("man/mailsuspend.8")
        text = unroff("\n".join(sections["GLOBAL OPTIONS"]))
        r = run([CLI, "--help"])
        for line in help_section(r.stdout, "Options"):
            for name in line.split()[0].split(","):
                if name.startswith("--"):
                    self.assertIn(name.split("=")[0], text)
        codes = [tag for tag, _ in tagged_entries(sections["EXIT STATUS"])]
        self.assertEqual(codes, ["0", "1", "2", "3"])
        for title in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"):
            self.assertIn(title, sections)

    def test_every_config_key_is_documented_with_its_default(self):
        sections = man_sections("man/mailsuspend.conf.5")
        entries = {}
        for title, lines in sections.items():
            for tag, body in tagged_entries(lines):
                entries[tag.split()[0]] = tag + "\n" + body
        defaults = example_defaults()
        for key in config_keys():
            with self.subTest(key=key):
                if key not in entries:
                    self.fail("mailsuspend.conf.5 has no entry for %s" % key)
                if key in defaults:  # the example shows it: the page must give the same default
                    self.assertIn(defaults[key], entries[key],
                                  "mailsuspend.conf.5: %s's default is %s in conf/mailsuspend.conf" %
                                  (key, defaults[key]))

    def test_pages_render_without_warnings(self):
        env = dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80")
        for page in ("man/mailsuspend.8", "man/mailsuspend.conf.5"):
            with self.subTest(page=page):
                r = run(["man", "--warnings", "-E", "UTF-8", "-l", os.path.join(SOURCE, page)], env=env)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stderr, "", "%s: groff warnings" % page)
                self.assertGreater(len(r.stdout.splitlines()), 50)


class Completion(unittest.TestCase):
    def test_every_command_is_offered(self):
        offered = complete("")
        for command in cli_commands():
            if command not in offered:
                self.fail("completions/mailsuspend does not offer '%s'" % command)
        self.assertEqual(complete("--config", "/etc/x", "rep"), {"report-spam"})

    def test_each_command_offers_exactly_its_options(self):
        for command in cli_commands():
            with self.subTest(command=command):
                offered = complete(command, "--") - HELP_OPTIONS
                self.assertEqual(offered, cli_options(command),
                                 "completions/mailsuspend: options of '%s'" % command)

    def test_global_options(self):
        self.assertTrue({"--config", "--actor"} <= complete("--"))

    def test_services_and_modes(self):
        services = model_names("kServiceNames")
        modes = model_names("kModeNames") - {"default"}  # not a mode one sets
        self.assertEqual(complete("suspend", "a@example.com", "--service", ""), services | {"all"})
        self.assertEqual(complete("suspend", "a@example.com", "--service", "imap,p"), {"imap,pop3"})
        self.assertEqual(complete("unsuspend", "a@example.com", "--service", ""), services | {"all"})
        self.assertEqual(complete("list", "--service", ""), services)
        self.assertEqual(complete("suspend", "a@example.com", "--mode", ""), modes)
        self.assertEqual(complete("set-mode", "a@example.com", ""), modes)


if __name__ == "__main__":
    CLI, SOURCE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    for needed in ("/usr/share/bash-completion/bash_completion", "/usr/bin/man"):
        if not os.path.exists(needed):  # fail, never skip (scripts/packages.txt installs them)
            sys.exit("test_docs.py: %s is missing: install man-db, groff-base and bash-completion" % needed)
    unittest.main(argv=sys.argv[:1], verbosity=2)
