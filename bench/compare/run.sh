#!/bin/sh
# Runs the comparison and scaling benchmarks and writes the markdown tables.
#   bench/compare/run.sh BUILD_DIR [OUT_DIR]
# compare_bench starts and stops its own redis-server (127.0.0.1:26391, or
# $MAILSUSPEND_REDIS_PORT); data sets are built once under
# /var/tmp/mailsuspend-bench (or $MAILSUSPEND_BENCH_DIR) and kept.
# Needs root for nice -20 (the machine is shared); about 10 minutes here.
set -eu
build=${1:?usage: run.sh BUILD_DIR [OUT_DIR]}
out=${2:-${MAILSUSPEND_BENCH_DIR:-/var/tmp/mailsuspend-bench}/compare/results}
here=$(dirname "$0")
mkdir -p "$out"
nice -n -20 "$build/bench/compare/compare_bench" \
    --benchmark_repetitions=3 --benchmark_min_time=0.2 --benchmark_report_aggregates_only=true \
    --benchmark_out="$out/compare.json" --benchmark_out_format=json | tee "$out/compare.txt"
nice -n -20 "$build/bench/compare/scaling_bench" --accounts 1000000 --ops 2000000 \
    --counter-ops 2000000 --reps 3 | tee "$out/scaling.md"
python3 "$here/summarize.py" "$out/compare.json" | tee "$out/compare.md"
