#!/usr/bin/env python3
"""The mail path never leaves the machine (issue 15): only the CLI links
hiredis; no Dovecot or Exim module may need it or hold the fleet code.

test_modules_without_hiredis.py MODULE...
"""
import re
import subprocess
import sys


def main():
    problems = []
    for module in sys.argv[1:]:
        needed = subprocess.run(["readelf", "-dW", module], capture_output=True, text=True, check=True).stdout
        if "hiredis" in needed:
            problems.append(f"{module} needs libhiredis")
        symbols = subprocess.run(["nm", "-C", module], capture_output=True, text=True, check=True).stdout
        if re.search(r"redis|fleet_change|cmd_sync", symbols):
            problems.append(f"{module} holds fleet agent code")
    if not sys.argv[1:]:
        problems.append("no module given")
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
