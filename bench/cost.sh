#!/usr/bin/env bash
# Reproduces BENCHMARKS.md's "Server instructions per request" section and bench/results/cost.csv:
# each server (our demo with the near-cache off and on, tower-sessions alone and behind moka, bare
# axum) under callgrind, instrumentation on only for the measured requests (c=1), two runs each
# (a few minutes). Exits non-zero if the runs disagree by more than 2 %.
# Installs valgrind and redis-server if they are missing. Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null || ! command -v redis-server >/dev/null; then
  apt-get update && apt-get install -y --no-install-recommends valgrind redis-server redis-tools
fi
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
fi
export CARGO_TARGET_DIR
cargo build --release --example demo
cargo build --release -p session-bench
exec "$CARGO_TARGET_DIR/release/session-bench" cost
