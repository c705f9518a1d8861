#!/usr/bin/env python3
"""Writes exim-local-scan/hot-message.ld: the module's functions that an SMTP message runs.

Each process the Exim daemon forks for a connection maps the module's code
afresh (a fork does not inherit the page tables of file mappings), one page
fault per 64 KiB window of code it runs (the kernel's fault-around).  The
linker script gathers the functions a message runs into one output section,
.text.hot_message, ahead of the rest of .text, so a message touches one or
two windows of the module's code instead of nine or ten
(bench/results/2026-12-05.md).

The functions are those of mailsuspend.so in the callgrind file of a
receiver: a process that ran the module's local_scan but never opened the
store (it inherited the daemon's).  Section names are .text.<symbol>, as
-ffunction-sections names them (libsodium's archive has no such sections;
its functions stay where they are).  A name that no longer exists matches
nothing, and that function just stays in .text: regenerate after changes to
the receiving path, as root, after building:

  python3 bench/counts.py --rows exim --messages 1 --keep /tmp/counts
  python3 bench/hot_sections.py --keep /tmp/counts
"""
import argparse
import glob
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def module_functions(path):
    """Names of the functions of mailsuspend.so that ran in the process of
    one callgrind file (kept with --compress-strings=no).  Valgrind names no
    object ("???") for code in a module's .text.hot_message (a section this
    script placed ahead of .text): those names count too, and main() keeps
    only the ones the module's symbol table has."""
    names, current_object = set(), ""
    with open(path) as f:
        for line in f:
            if line.startswith("ob="):
                current_object = line[3:].strip()
            elif line.startswith("fn=") and (current_object.endswith("/mailsuspend.so") or
                                             current_object == "???"):
                names.add(line[3:].strip())
    return names


def receiver_functions(keep):
    """The module's functions of every receiver among the kept files."""
    found = set()
    for path in glob.glob(os.path.join(keep, "module", "cg.*")):
        names = module_functions(path)
        if "local_scan" in names and "mailsuspend_open" not in names:
            found |= names
    if not found:
        raise SystemExit(f"no receiver's callgrind file in {keep}/module (run counts.py --rows exim --keep)")
    return found


def symbols_by_name(so):
    """Demangled name -> the symbols it stands for (clones included)."""
    mangled = subprocess.run(["nm", so], capture_output=True, text=True, check=True).stdout.splitlines()
    plain = subprocess.run(["nm", "-C", so], capture_output=True, text=True, check=True).stdout.splitlines()
    by_name = {}
    for raw, readable in zip(mangled, plain):
        raw_fields, readable_fields = raw.split(None, 2), readable.split(None, 2)
        if len(raw_fields) == 3 and raw_fields[1] in "tTwW":
            by_name.setdefault(readable_fields[2], set()).add(raw_fields[2])
    return by_name


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", required=True, help="the directory counts.py --keep wrote")
    parser.add_argument("--so", default=os.path.join(HERE, "..", "build", "exim-local-scan", "mailsuspend.so"))
    parser.add_argument("--out", default=os.path.join(HERE, "..", "exim-local-scan", "hot-message.ld"))
    args = parser.parse_args()
    by_name = symbols_by_name(args.so)
    sections = sorted({f".text.{symbol}" for name in receiver_functions(args.keep)
                       for symbol in by_name.get(name, ())})
    with open(args.out, "w") as out:
        out.write("/* The module's functions an SMTP message runs in a receiving process, gathered\n"
                  "   ahead of .text.  Written by bench/hot_sections.py; see it for why. */\n"
                  "SECTIONS\n{\n  .text.hot_message :\n  {\n")
        out.writelines(f"    *({section})\n" for section in sections)
        out.write("  }\n}\nINSERT BEFORE .text;\n")
    print(f"{len(sections)} sections written to {args.out}")


if __name__ == "__main__":
    main()
