#!/usr/bin/env bash
# Soak: mixed traffic at c=64 against the demo on a private redis-server, loopback only, bounded in
# time (default 10 minutes; --duration SECS to change). Four clients share each session, each on its
# own connection writing keys of its own, and at the end each checks every key it wrote. Reports
# requests, errors, lost updates and the demo's RSS sampled through the run; exits non-zero on any
# error, any lost update, RSS still growing (the second half's lowest sample more than 10 % over the
# first half's highest), or RSS that cannot be read.
set -euo pipefail
cd "$(dirname "$0")/.."
# bench/run.sh installs redis-server if it is missing and builds the demo and the benchmark.
exec bash bench/run.sh soak "$@"
