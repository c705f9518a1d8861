#!/usr/bin/env python3
"""The Dovecot mail plugins' core module must stay light to load: a session
that outlives the first re-check pays for everything it pulls in (libstdc++.so
alone cost +1.1 ms of CPU per session; bench/results/2026-12-02.md "What a mail process pays").
Fails when the module needs a shared library beyond libc, libconfig (C) and
the dynamic loader, or exports other symbols than its version script
(dovecot-plugin/core-module.map) makes global, or when it holds code of the
writers (issue 13: the mail plugins' core module links the store's reader
only; the linker's --gc-sections drops what no check reaches).

test_core_module_deps.py MODULE VERSION_SCRIPT"""
import re
import subprocess
import sys

ALLOWED_NEEDED = {"libc.so.6", "libconfig.so.9", "ld-linux-x86-64.so.2"}
# The writers' code (store writer, Session and its audit log, the outbox,
# process spawning): none of it may reach the module.
WRITER_CODE = ("StoreWriter", "Session::", "append_audit", "outbox_put", "run_program", "run_detached")


def run(*argv):
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {out.stderr.strip()}")
    return out.stdout


def global_symbols(version_script):
    """The names in the version script's global: block."""
    with open(version_script) as f:
        text = f.read()
    block = re.search(r"global:(.*?)local:", text, re.S)
    if not block:
        sys.exit(f"{version_script}: no global: ... local: block")
    return set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*;", block.group(1)))


def main():
    module, version_script = sys.argv[1], sys.argv[2]
    exports = global_symbols(version_script)
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                            run("readelf", "-dW", module)))
    exported = set()
    for line in run("nm", "-D", "--defined-only", module).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtWDdBb":
            exported.add(parts[2])
    problems = []
    if not needed:
        problems.append("no NEEDED entries read (not an ELF shared object?)")
    if needed - ALLOWED_NEEDED:
        problems.append(f"needs {sorted(needed - ALLOWED_NEEDED)}; allowed: {sorted(ALLOWED_NEEDED)}")
    if exported != exports:
        problems.append(f"exports {sorted(exported)}; expected {sorted(exports)}")
    symbols = run("nm", "-C", module)
    if "StoreReader::lookup" not in symbols:
        problems.append("no StoreReader::lookup in its symbol table (stripped? the check needs it)")
    writers = sorted({name for name in WRITER_CODE if name in symbols})
    if writers:
        problems.append(f"holds writer code: {writers}")
    if problems:
        sys.exit(f"{module}:\n  " + "\n  ".join(problems))
    print(f"{module}: needs {sorted(needed)}, exports {sorted(exports)}")


if __name__ == "__main__":
    main()
