#!/bin/sh
# Unpacks Debian's exim4-daemon-light (same version as the installed exim4)
# into DIR without installing it (it conflicts with exim4-daemon-heavy), so
# test_light.py can run the real light binary.  Prints the binary's path.
# Uses only apt (Debian's archive).  Usage: fetch-exim-light.sh DIR
set -eu
dir=$1
bin="$dir/root/usr/sbin/exim4"
if [ ! -x "$bin" ]; then
    mkdir -p "$dir"
    version=$(dpkg-query -W -f '${Version}' exim4-base)
    cd "$dir"
    if ! ls exim4-daemon-light_*.deb >/dev/null 2>&1; then
        apt-get download "exim4-daemon-light=$version" >&2
    fi
    dpkg -x exim4-daemon-light_*.deb root
fi
echo "$bin"
