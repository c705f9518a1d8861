#!/usr/bin/env python3
"""The mail path never speaks HTTP (issue 16, item 4): only the CLI links
libcurl; no Dovecot or Exim module may need it or hold the notify agent.

test_modules_without_curl.py MODULE...
"""
import re
import subprocess
import sys


def main():
    problems = []
    for module in sys.argv[1:]:
        needed = subprocess.run(["readelf", "-dW", module], capture_output=True, text=True, check=True).stdout
        if "curl" in needed:
            problems.append(f"{module} needs libcurl")
        symbols = subprocess.run(["nm", "-C", module], capture_output=True, text=True, check=True).stdout
        if re.search(r"curl_|Webhook|cmd_notify|AuditFollower", symbols):
            problems.append(f"{module} holds notify agent code")
    if not sys.argv[1:]:
        problems.append("no module given")
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
