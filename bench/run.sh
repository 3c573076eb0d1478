#!/usr/bin/env bash
# Reproduces BENCHMARKS.md, bench/results/benchmarks.csv and bench/results/benchmarks.svg: installs
# redis-server if it is missing, builds the demo and the peers in release, then runs the benchmark
# (about 13 minutes).
# Options are passed on: --rounds N --warmup SECS --duration SECS --out DIR; or a subcommand of the
# benchmark (`soak`, `cost`, `coherence`), as bench/soak.sh and bench/cost.sh run it.
# Honours CARGO_TARGET_DIR (else cargo's own target directory, as `cargo metadata` reports it).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  apt-get update && apt-get install -y --no-install-recommends redis-server redis-tools
fi
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
fi
# The benchmark finds the demo and the peers there too.
export CARGO_TARGET_DIR
cargo build --release --example demo
cargo build --release -p session-bench
exec "$CARGO_TARGET_DIR/release/session-bench" "$@"
