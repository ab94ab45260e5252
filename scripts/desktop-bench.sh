#!/usr/bin/env bash
# Desktop numbers of the `longlink` tool, rerunnable:
#  1. `longlink bench`: queued stdin line -> wire latency, echo round trip
#     (vs a bare std::net echo loop), idle CPU against a bare server;
#  2. idle CPU of `longlink client` (tutorial defaults) connected to
#     `longlink lab`, from /proc/<pid>/stat utime+stime.
# Loopback only. IDLE (seconds, default 30) and SAMPLES (default 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${IDLE:-30}
SAMPLES=${SAMPLES:-1000}
cargo build --release -q -p longlink-std
BIN=${CARGO_TARGET_DIR:-target}/release/longlink

echo "== longlink bench --idle ${IDLE}s --samples $SAMPLES"
"$BIN" bench --idle "${IDLE}s" --samples "$SAMPLES"

echo "== idle CPU: longlink client connected to longlink lab for ${IDLE}s"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" lab --listen "127.0.0.1:$PORT" >/dev/null &
LAB=$!
trap 'kill "$LAB" 2>/dev/null || true' EXIT
sleep 0.5
"$BIN" -q client "tcp://127.0.0.1:$PORT" < <(sleep $((IDLE + 10))) &
CLIENT=$!
sleep 1
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
T0=$(ticks "$CLIENT")
sleep "$IDLE"
T1=$(ticks "$CLIENT")
HZ=$(getconf CLK_TCK)
kill -INT "$CLIENT"
wait "$CLIENT" || true
awk -v t="$((T1 - T0))" -v hz="$HZ" -v s="$IDLE" \
  'BEGIN { printf "client CPU: %d ticks (%.3fs) over %ds = %.3f%% of one core\n", t, t / hz, s, 100 * t / hz / s }'
