# Shared by scripts/test and scripts/demo: install packages, configure, build.
# shellcheck shell=bash

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "$1 must run as root: it installs Debian packages and starts Dovecot and Exim on loopback." >&2
    exit 1
  fi
}

install_packages() {
  local list missing=()
  list=$(grep -v '^#' "$ROOT/scripts/packages.txt")
  for p in $list; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "Installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # The packages' own init scripts must not start system daemons: the tests start
  # their own servers on loopback ports.
  local policy=/usr/sbin/policy-rc.d added=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; added=1; fi
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  [ "$added" -eq 1 ] && rm -f "$policy"
  return 0
}

build() {
  local dir=$1; shift
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
  cmake --build "$dir" -j"$(nproc)"
}
