#!/bin/sh
# run_fuzzer.sh FUZZER WORKDIR SEED_CORPUS SECONDS
# Replays every seed, then mutates for SECONDS.  New inputs go to
# WORKDIR/corpus (emptied first; the seed corpus in the source tree is only read); a crash
# leaves WORKDIR/crash-*.  Exit status: the fuzzer's (non-zero on any finding).
set -eu
fuzzer=$1 work=$2 seeds=$3 seconds=$4
[ -d "$seeds" ] || { echo "no seed corpus at $seeds" >&2; exit 1; }
[ -n "$(ls -A "$seeds")" ] || { echo "seed corpus $seeds is empty" >&2; exit 1; }
# A fresh scratch corpus each run: every CI run is the seeds plus SECONDS of
# mutation, however many runs came before.
rm -rf "$work/corpus"
mkdir -p "$work/corpus"
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
  -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" "$seeds"
