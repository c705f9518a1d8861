#!/usr/bin/env python3
"""Keeps the documents' references true to the tree (issue 13 item 5).

- Every relative Markdown link in the documents (README.md, BENCHMARKS.md,
  docs/, bench/, the host folders' READMEs) points at a file or folder that
  exists, and its #anchor at a heading of that file.
- Every repository path the documents and man pages name (`common/...`,
  `tests/...`, `conf/...`, ...) exists; a glob (`leak-*`) or brace list
  (`{a,b}`) must match something.
- Every mention of a *.md file, in the documents and in the source's
  comments, names a file that exists, and a section quoted after it
  (`BENCHMARKS.md "Idle sessions"`, `README.md ("Permissions")`) is a
  heading or a bold paragraph lead of that file.

Needs no build: reads the source tree only.  Usage: test_docs_links.py SOURCE_DIR
"""
import glob
import os
import re
import sys
import unittest

SOURCE = None
# Top-level folders whose paths the documents may name.
TOP = ("common", "cli", "bench", "tests", "conf", "dovecot-plugin", "exim-local-scan", "debian",
       "man", "completions", "scripts", "docs", ".ci")
# Paths that name build output (relative to a build directory), not source.
BUILD_OUTPUT = re.compile(r"\.so(\.\d+)*$|^bench/(store_bench|crash_torture|core_load|store_open_probe)$")
# Where the source's comments may mention documents.
CODE_SUFFIXES = (".c", ".h", ".cpp", ".hpp", ".py", ".sh", ".txt", ".cmake", ".map", ".conf")

MD_LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"(?<![\w./~$@-])((?:%s)/[\w.+*{},/<>-]*)" % "|".join(re.escape(t) for t in TOP))
MD_MENTION = re.compile(r"(?<![\w/.$-])((?:[\w.-]+/)*[\w.-]+\.md)\b(?:#[\w-]+)?(?:[`)\]]*)(?:,?\s*\(?\"([^\"\n]+)\")?")


def rel(path):
    return os.path.relpath(path, SOURCE)


def documents():
    """The documents to check: Markdown files and man pages."""
    patterns = ["*.md", "*/README.md", "docs/*.md", "bench/results/*.md", "man/*.[1-8]"]
    found = set()
    for p in patterns:
        found.update(glob.glob(os.path.join(SOURCE, p)))
    return sorted(found)


def source_files():
    """Text files of the source tree (build directories, .git and fuzz corpora left out)."""
    for root, dirs, files in os.walk(SOURCE):
        dirs[:] = [d for d in dirs if not (d.startswith("build") or d in (".git", "__pycache__", "corpus"))
                   and not (d.startswith(".") and d != ".ci")]
        for f in files:
            if f.endswith(CODE_SUFFIXES) or f == "CMakeLists.txt":
                yield os.path.join(root, f)


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if re.search(r"\.[1-8]$", path):  # roff: as the reader sees it
        text = re.sub(r"\\f[BIRP]|\\f\(..|\\&|\\c", "", text).replace("\\-", "-").replace("\\(dq", '"')
    return text


def without_code_blocks(text):
    """Markdown without fenced blocks (commands there hold paths relative to a build dir)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def slug(heading):
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    seen, out = {}, set()
    for line in without_code_blocks(read(path)).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else "%s-%d" % (s, seen[s]))
            seen[s] = seen.get(s, 0) + 1
    return out


def section_titles(path):
    """Headings and bold paragraph leads ("**Live sessions: ...**"), lower-cased, markup dropped."""
    titles = []
    for line in read(path).splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line) or re.match(r"^\*\*([^*]+)\*\*", line)
        if m:
            titles.append(re.sub(r"[`*]", "", m.group(1)).strip().lower())
    return titles


def expand(path):
    """`a/{b,c}/d` -> [a/b/d, a/c/d]."""
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [p for alt in m.group(1).split(",") for p in expand(path[:m.start()] + alt + path[m.end():])]


def path_exists(path, base):
    for candidate in expand(path):
        if "<" in candidate:  # a placeholder (corpus/<target>/): check the part before it
            candidate = candidate[:candidate.index("<")]
        found = False
        for root in (SOURCE, base):
            full = os.path.join(root, candidate)
            # A program is named by its path without the source suffix (tests/faults/fault_writer).
            if glob.glob(full) if "*" in candidate else any(
                    os.path.exists(full + suffix) for suffix in ("", ".c", ".cpp", ".py")):
                found = True
        if not found:
            return False
    return True


def check_section(md, section, where, problems):
    titles = section_titles(md)
    wanted = section.strip().lower()
    if not any(t.startswith(wanted) or wanted in t for t in titles):
        problems.append('%s: "%s" is not a section of %s' % (where, section, rel(md)))


class Documents(unittest.TestCase):
    def test_markdown_links_resolve(self):
        problems = []
        for doc in documents():
            if not doc.endswith(".md"):
                continue
            base = os.path.dirname(doc)
            for target in MD_LINK.findall(without_code_blocks(read(doc))):
                if re.match(r"^[a-z]+:", target):
                    continue  # http:, https:, mailto:
                path, _, anchor = target.partition("#")
                full = os.path.normpath(os.path.join(base, path)) if path else doc
                if not os.path.exists(full):
                    problems.append("%s: link to %s: no such file" % (rel(doc), target))
                elif anchor and full.endswith(".md") and anchor not in anchors(full):
                    problems.append("%s: link to %s: no heading #%s in %s" % (rel(doc), target, anchor, rel(full)))
        self.assertFalse(problems, "\n" + "\n".join(problems))

    def test_repository_paths_exist(self):
        problems = []
        for doc in documents():
            text = without_code_blocks(read(doc)) if doc.endswith(".md") else read(doc)
            for path in REPO_PATH.findall(text):
                path = path.rstrip(".,:;")
                if BUILD_OUTPUT.search(path):
                    continue
                if not path_exists(path, os.path.dirname(doc)):
                    problems.append("%s: %s does not exist" % (rel(doc), path))
        self.assertFalse(problems, "\n" + "\n".join(sorted(set(problems))))

    def test_mentioned_documents_and_sections_exist(self):
        problems = []
        for f in list(documents()) + list(source_files()):
            base = os.path.dirname(f)
            for name, section in MD_MENTION.findall(read(f)):
                md = next((p for p in (os.path.join(base, name), os.path.join(SOURCE, name))
                           if os.path.isfile(p)), None)
                if md is None:
                    problems.append("%s: %s does not exist" % (rel(f), name))
                elif section:
                    check_section(md, section, rel(f), problems)
        self.assertFalse(problems, "\n" + "\n".join(sorted(set(problems))))


if __name__ == "__main__":
    SOURCE = os.path.abspath(sys.argv[1])
    unittest.main(argv=sys.argv[:1], verbosity=2)
