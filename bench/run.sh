#!/usr/bin/env bash
# Reproduces BENCHMARKS.md, benchmarks.csv and benchmarks.svg: installs redis-server if it is
# missing, builds the demo and the peers in release, then runs the benchmark (about 8 minutes).
# Options are passed on: --rounds N --warmup SECS --duration SECS --out DIR
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  apt-get update && apt-get install -y --no-install-recommends redis-server redis-tools
fi
cargo build --release --example demo
cargo build --release -p session-bench
exec target/release/session-bench "$@"
