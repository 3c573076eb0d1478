#!/usr/bin/env bash
# Reproduces BENCHMARKS.md's "Server instructions per request" section and bench/results/cost.csv:
# each server (our demo with the near-cache off and on, tower-sessions alone and behind moka, bare
# axum) under callgrind, instrumentation on only for the measured requests (c=1), two runs each
# (a few minutes). Exits non-zero if the runs disagree by more than 2 %.
# Installs valgrind if it is missing; bench/run.sh does the rest (redis-server, the builds).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
  apt-get update && apt-get install -y --no-install-recommends valgrind
fi
exec bash bench/run.sh cost
