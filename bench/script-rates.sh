#!/usr/bin/env bash
# The capacity plan's Redis rates (docs/scaling.md, "Capacity planning"): how many calls per second one Redis
# core serves of each call a request makes, with the crate's real scripts.
#
# Starts a private redis-server and the demo on loopback, drives one session through the demo (create,
# read + write, a read whose TTL touch is due), and takes from MONITOR the exact calls the demo sent:
# the session read (HGETALL), the save (EVALSHA of fast_update.lua, a read + write of one field), a write
# without a read (EVALSHA of update.lua) and the touch script (EVALSHA), the session being the typical one
# of docs/scaling.md. Then redis-benchmark replays each call with
# 32 clients, against a plain GET for scale.
# The rates include redis-benchmark's own CPU on the same machine.
#
# Usage: bash bench/script-rates.sh [--requests N]   (default 200000 per call)
set -euo pipefail
cd "$(dirname "$0")/.."
requests=200000
if [ "${1:-}" = "--requests" ]; then requests="$2"; fi
for tool in redis-server redis-cli redis-benchmark curl python3; do
  command -v "$tool" >/dev/null || { echo "script-rates: $tool is needed" >&2; exit 1; }
done
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
fi
cargo build --release --example demo
demo="$CARGO_TARGET_DIR/release/examples/demo"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
  >"$dir/redis.log" 2>&1 &
pids+=($!)
cli() { redis-cli -p "$redis_port" "$@"; }
until cli ping >/dev/null 2>&1; do sleep 0.05; done

app_port="$(free_port)"
ADDR="127.0.0.1:$app_port" REDIS_URL="redis://127.0.0.1:$redis_port" COOKIE_SECURE=false \
  RUST_LOG=warn "$demo" >"$dir/demo.log" 2>&1 &
pids+=($!)
until curl -sf "127.0.0.1:$app_port/health" >/dev/null; do sleep 0.05; done

cli monitor >"$dir/monitor.log" 2>&1 &
monitor=$!
pids+=($monitor)
sleep 0.2
jar="$dir/jar"
get() { curl -sf -c "$jar" -b "$jar" "127.0.0.1:$app_port$1" >/dev/null; }
send() { curl -sf -c "$jar" -b "$jar" -X "$1" --data-binary "$3" "127.0.0.1:$app_port$2" >/dev/null; }
# The typical session of docs/scaling.md ($created, $user, a counter, a 3-item cart, a theme), then a read +
# write of it: that save is an EVALSHA of the cached script.
get /counter
send POST /login 'user=alice@example.com'
send PUT /kv/cart '["sku-1042","sku-2210","sku-3307"]'
send PUT /kv/theme dark
get /counter
key="$(cli --scan --pattern 'session:*' | grep -v '^session:user:' | head -1)"
# Twice a read whose TTL is due (as after a tenth of the idle timeout): the second touch is an EVALSHA.
for _ in 1 2; do
  cli hset "$key" '$expires' "$(( $(date +%s%3N) + 60000 ))" >/dev/null
  cli pexpire "$key" 60000 >/dev/null
  get /counter/peek
done
sleep 0.2
kill "$monitor"

# The last EVALSHA of the named script, as redis-benchmark arguments (NUL-separated).
call_of() {
  grep -i '"evalsha"' "$dir/monitor.log" | grep -F "\"$1\"" | tail -1 |
    python3 -c 'import shlex, sys; line = sys.stdin.read(); print("\0".join(shlex.split(line.split("] ", 1)[1])), end="")'
}
# A read + write of one field goes through fast_update.lua, the common write; a write without a read
# (the PUTs) through update.lua (create.lua takes new sessions and cycles).
mapfile -d '' save < <(call_of fast_update)
mapfile -d '' blind < <(call_of update)
mapfile -d '' touch < <(call_of touch)
[ "${#save[@]}" -gt 0 ] && [ "${#blind[@]}" -gt 0 ] && [ "${#touch[@]}" -gt 0 ] || {
  echo "script-rates: MONITOR did not show the three scripts" >&2
  exit 1
}
[ "${save[4]}" = "fast_update" ] || { echo "script-rates: the captured save is not fast_update.lua: ${save[*]}" >&2; exit 1; }
[ "${blind[4]}" = "update" ] || { echo "script-rates: the captured write is not update.lua: ${blind[*]}" >&2; exit 1; }
cli set plain value >/dev/null

rate() {
  redis-benchmark -p "$redis_port" -c 32 -n "$requests" -q "$@" |
    tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1
}
echo "Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), one core, 32 clients, $requests calls each:"
printf '%-44s %12s\n' "call" "calls/s"
printf '%-44s %12s\n' "session read (HGETALL)" "$(rate hgetall "$key")"
printf '%-44s %12s\n' "save (read + write of one field: fast_update)" "$(rate "${save[@]}")"
printf '%-44s %12s\n' "write without a read (update.lua)" "$(rate "${blind[@]}")"
printf '%-44s %12s\n' "touch script (TTL, \$expires, index)" "$(rate "${touch[@]}")"
printf '%-44s %12s\n' "plain GET" "$(rate get plain)"
