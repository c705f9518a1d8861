#!/usr/bin/env python3
"""The mail path never leaves the machine (issue 15): only the CLI links
hiredis; no Dovecot or Exim module may need it or hold the fleet code.
tests/notify runs it for the alerts agent (issue 16): no libcurl, no notify code.

test_modules_without_hiredis.py [--library NAME] [--code REGEX] MODULE...
"""
import argparse
import re
import subprocess
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", default="hiredis", help="a library no module may need")
    parser.add_argument("--code", default=r"redis|fleet_change|cmd_sync", help="symbols no module may hold")
    parser.add_argument("modules", nargs="*")
    args = parser.parse_args()
    problems = []
    for module in args.modules:
        needed = subprocess.run(["readelf", "-dW", module], capture_output=True, text=True, check=True).stdout
        if args.library in needed:
            problems.append(f"{module} needs lib{args.library}")
        symbols = subprocess.run(["nm", "-C", module], capture_output=True, text=True, check=True).stdout
        if re.search(args.code, symbols):
            problems.append(f"{module} holds agent code ({args.code})")
    if not args.modules:
        problems.append("no module given")
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
