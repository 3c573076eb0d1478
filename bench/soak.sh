#!/usr/bin/env bash
# Soak: mixed traffic at c=64 against the demo on a private redis-server, loopback only, bounded in
# time (default 10 minutes; --duration SECS to change). Four clients share each session, each on its
# own connection writing keys of its own, and at the end each checks every key it wrote. Reports
# requests, errors, lost updates and the demo's RSS sampled through the run; exits non-zero on any
# error, any lost update, RSS still growing (the second half's lowest sample more than 10 % over the
# first half's highest), or RSS that cannot be read.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null; then
  apt-get update && apt-get install -y --no-install-recommends redis-server redis-tools
fi
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
fi
export CARGO_TARGET_DIR
cargo build --release --example demo
cargo build --release -p session-bench
exec "$CARGO_TARGET_DIR/release/session-bench" soak "$@"
