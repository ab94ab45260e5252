#!/usr/bin/env bash
# End-to-end numbers of the desktop client on loopback, as a markdown
# section for BENCHMARKS.md (scripts/bench.sh calls this).
#
# `longlink bench --raw` runs RUNS times (default 5). Each run measures the
# client and a bare std::net echo client back to back, so every ratio is taken
# within one run; the table shows the median over runs of each figure and of
# each ratio. Idle CPU is summed over all runs' idle periods.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SAMPLES=${SAMPLES:-2000}
MESSAGES=${MESSAGES:-20000}
IDLE=${IDLE:-6}
cargo build --release -q -p longlink-std
BIN=${CARGO_TARGET_DIR:-target}/release/longlink
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Two sets: everything on one core (taskset -c 0: no cross-core wake-ups,
# whose cost on this kind of VM varies from run to run and swamps the
# difference), and free scheduling.
for set in pinned free; do
  for i in $(seq "$RUNS"); do
    echo "-- e2e $set run $i/$RUNS" >&2
    pin=()
    [[ $set == pinned ]] && command -v taskset >/dev/null && pin=(taskset -c 0)
    "${pin[@]}" "$BIN" bench --raw --samples "$SAMPLES" --messages "$MESSAGES" --idle "${IDLE}s" >"$TMP/$set$i"
  done
done
for set in pinned free; do
python3 - "$TMP" "$RUNS" "$SAMPLES" "$MESSAGES" "$IDLE" "$set" <<'PY'
import statistics as st, sys, os
tmp, runs, samples, messages, idle, which = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
R = []
for i in range(1, runs + 1):
    d = {}
    for line in open(os.path.join(tmp, f"{which}{i}")):
        k, v = line.strip().split("=")
        d[k] = float(v)
    R.append(d)
med = lambda f: st.median(f(r) for r in R)
if which == "pinned":
    print(f"`longlink bench --raw --samples {samples} --messages {messages} --idle {idle}s`, "
          f"{runs} runs per set (`scripts/bench-e2e.sh`): the release `longlink client` "
          "(lines framing, the nal-async driver over std-embedded-nal-async) against an "
          "in-process server on 127.0.0.1, and, measured in the same run as the floor, "
          "a bare blocking `std::net` echo client (`longlink bare-echo`: a separate process "
          "that reads lines and writes each back). Medians over runs.\n")
    print("**All on one core** (`taskset -c 0`): no cross-core wake-ups, the stable comparison.\n")
else:
    print("\n**Free scheduling** across both cores: wake-ups that cross cores cost tens of "
          "microseconds on this VM, for the bare client too, and vary from run to run.\n")
print("| measure | longlink | bare std::net | ratio (median of per-run ratios) | goal |")
print("|---|---:|---:|---:|---|")
print(f"| echo round trip p50 | {med(lambda r: r['echo_p50_us']):.1f} µs | {med(lambda r: r['bare_p50_us']):.1f} µs "
      f"| {med(lambda r: r['echo_p50_us'] / r['bare_p50_us']):.2f}x | ≤ 1.2x |")
print(f"| echo round trip p99 | {med(lambda r: r['echo_p99_us']):.1f} µs | {med(lambda r: r['bare_p99_us']):.1f} µs "
      f"| {med(lambda r: r['echo_p99_us'] / r['bare_p99_us']):.2f}x | |")
print(f"| pipelined echo | {med(lambda r: r['echo_msgs_per_s']):,.0f} msg/s | {med(lambda r: r['bare_msgs_per_s']):,.0f} msg/s "
      f"| {med(lambda r: r['echo_msgs_per_s'] / r['bare_msgs_per_s']):.2f}x | |")
print(f"| queued stdin line → server has read it, p50 | {med(lambda r: r['wire_p50_us']):.1f} µs | {med(lambda r: r['bare_wire_p50_us']):.1f} µs | | < 1 ms |")
print(f"| queued stdin line → server has read it, p99 | {med(lambda r: r['wire_p99_us']):.1f} µs | {med(lambda r: r['bare_wire_p99_us']):.1f} µs | | |")
print(f"| queued stdin line → server has read it, max | {med(lambda r: r['wire_max_us']):.1f} µs | {med(lambda r: r['bare_wire_max_us']):.1f} µs "
      f"| {med(lambda r: r['wire_max_us'] / r['bare_wire_max_us']):.2f}x | ≤ 3x |")
if all('idle_cpu_percent' in r for r in R):
    total_s = sum(r['idle_s'] for r in R)
    cpu = sum(r['idle_cpu_percent'] * r['idle_s'] for r in R) / total_s
    print(f"| idle CPU, connected, heartbeat 10 s | {cpu:.3f} % of one core over {total_s:.0f} s | | | ~0 % |")
print()
print("Per-run echo p50 ratios: " + ", ".join(f"{r['echo_p50_us'] / r['bare_p50_us']:.2f}x" for r in R) + ".")
PY
done
echo
echo "The bare client writes each reply as it reads it (one system call per line);"
echo "longlink writes every reply queued behind the first in one call, which is why"
echo "it can exceed the bare client's pipelined rate. Round trips compare like with"
echo "like: one request, one reply."
