#!/usr/bin/env bash
# The real-stack firmware (platforms/qemu-firmware, --features net: LAN9118 +
# smoltcp + smoltcp-nal + longlink-nal) under QEMU (mps2-an386), its frames
# carried over 127.0.0.1 to qemu-bridge (platforms/qemu-bridge), which
# answers ARP and SNTP on 192.0.2.1 and forwards the session to a server on
# 127.0.0.1.
#
#   scripts/qemu-lab.sh [--udp | --async] [--heartbeat DUR] [--retry-delay DUR] [HOST:PORT]
#   scripts/qemu-lab.sh --fault [--udp] [--heartbeat DUR] [--retry-delay DUR]
#   scripts/qemu-lab.sh --modem-rows
#   scripts/qemu-lab.sh --watchdog
#
# Without HOST:PORT: starts `longlink lab --check` on loopback, runs the
# firmware against it and exits with the check's verdict.
# With HOST:PORT (loopback only): forwards to a server already listening
# there until killed or QEMU_SECONDS elapse.
# --fault: against `longlink lab` (fed a `back ping` every second), the
# bridge pulls the link (drops every frame) for longer than the firmware's
# idle timeout, restores it, and passes only if the messages the firmware
# queued when it noticed the loss reach the server once each, in order.
# --modem-rows (TCP): the tutorial's flight-mode and link-reset rows on the
# firmware path, with short timings (network wait 3s, flight mode 2s,
# connect timeout 2s, retry 2s): QEMU starts with the PHY link down (the
# bridge's `set_link` on QEMU's monitor, loopback TCP) for 7s, then the
# bridge refuses connects for 20s more; the firmware must cycle its radio,
# reset the link after 5 failed connects, connect, and says so in its exit
# code.
# --watchdog: the firmware stops feeding the (emulated CMSDK) watchdog after
# 3s; passes if the watchdog barks (NMI) and then resets the machine
# (QEMU runs with -no-reboot, so the reset ends it) long before the
# firmware's own 20s end.
#
# --async (with any mode but --watchdog and --udp): the firmware variant on
# embassy-net with longlink-nal-async instead (`--features net-async`, TCP).
#
# QEMU's only contact with the host is a UDP socket pair on 127.0.0.1
# (-netdev dgram), plus, in --modem-rows, its monitor on a 127.0.0.1 TCP
# port. No TAP, no slirp, no other address. Builds what it needs; installs qemu-system-arm if missing.
# Every run is time-limited (QEMU_SECONDS, default 300 for the verdict runs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

udp=""
heartbeat=10s
retry=5s
fault=""
rows=""
dog=""
async=""
target=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --udp) udp=1 ;;
    --heartbeat) heartbeat=$2; shift ;;
    --retry-delay) retry=$2; shift ;;
    --fault) fault=1 ;;
    --modem-rows) rows=1 ;;
    --watchdog) dog=1 ;;
    --async) async=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "qemu-lab: unknown option $1" >&2; exit 2 ;;
    *) target=$1 ;;
  esac
  shift
done

ms() { # DUR (ms, s, m) -> milliseconds
  case "$1" in
    *ms) echo $(( ${1%ms} )) ;;
    *s) echo $(( ${1%s} * 1000 )) ;;
    *m) echo $(( ${1%m} * 60000 )) ;;
    *) echo "qemu-lab: bad duration $1 (use ms, s or m)" >&2; exit 2 ;;
  esac
}
hb_ms=$(ms "$heartbeat")
retry_ms=$(ms "$retry")

if [[ -n $async && -n $udp ]]; then
  echo "qemu-lab: --async is TCP only (embassy-net has no embedded-nal-async UDP)" >&2
  exit 2
fi
if [[ -n $target ]]; then
  [[ -z $fault$rows ]] || { echo "qemu-lab: --fault/--modem-rows run against their own lab, not $target" >&2; exit 2; }
  host=${target%:*}
  port=${target##*:}
  [[ $host == localhost ]] && host=127.0.0.1
  if [[ $host != 127.0.0.1 || ! $port =~ ^[0-9]+$ ]]; then
    echo "qemu-lab: $target: only 127.0.0.1:PORT (loopback) is allowed" >&2
    exit 2
  fi
fi

command -v qemu-system-arm >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq qemu-system-arm >/dev/null; }
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true

echo "qemu-lab: building the firmware, the bridge and longlink" >&2
FW_TARGET=${QEMU_FW_TARGET_DIR:-$ROOT/platforms/qemu-firmware/target}
feature=net
if [[ -n $async ]]; then
  # Its own target dir: switching features would relink the other one.
  feature=net-async
  FW_TARGET=$FW_TARGET/net-async
fi
(cd platforms/qemu-firmware &&
  CARGO_TARGET_DIR=$FW_TARGET cargo build -q --release --no-default-features --features "$feature")
cargo build -q --release -p longlink-qemu-bridge -p longlink-std
HOST_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ELF=$FW_TARGET/thumbv7em-none-eabihf/release/longlink-qemu-firmware
BRIDGE=$HOST_TARGET/release/qemu-bridge
LONGLINK=$HOST_TARGET/release/longlink

# Free loopback ports: QEMU's end, the bridge's end, the lab, QEMU's monitor.
read -r qport bport lport mport < <(python3 - <<'PY'
import socket
socks = []
for kind in (socket.SOCK_DGRAM, socket.SOCK_DGRAM, socket.SOCK_STREAM, socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*[s.getsockname()[1] for s in socks])
PY
)
[[ -n $target ]] && lport=$port

LOG=$(mktemp -d "${TMPDIR:-/tmp}/qemu-lab.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 143' TERM INT # run the EXIT trap when killed (timeout, Ctrl-C)

transport=tcp
[[ -n $udp ]] && transport=udp
fw_args=("longlink" "$transport" "heartbeat=$hb_ms" "retry=$retry_ms")
bridge_args=(--listen "127.0.0.1:$bport" --qemu "127.0.0.1:$qport" --server "127.0.0.1:$lport" ${udp:+--udp})

if [[ -n $fault ]]; then
  # Idle timeout 3 heartbeats (the lab's pings keep it fed until the pull);
  # the outage lasts 2 s longer than that, and the firmware's retry delay
  # keeps the reconnect after the restore, so what it queued on noticing
  # the loss must cross the restored link.
  idle_ms=$(( hb_ms * 3 ))
  pull_ms=$(( idle_ms + 2000 ))
  (( retry_ms > 2000 )) || { echo "qemu-lab: --fault needs a retry delay over 2s" >&2; exit 2; }
  fw_args+=("fault" "idle=$idle_ms")
  bridge_args+=(--pull-at 6s --pull-for "${pull_ms}ms"
    --expect "lost-1-1;,lost-1-2;,lost-1-3;" --forbid "lost-2-"
    --seconds "${QEMU_SECONDS:-300}")
elif [[ -n $rows ]]; then
  [[ -z $udp ]] || { echo "qemu-lab: --modem-rows is TCP only (a UDP connect cannot be refused)" >&2; exit 2; }
  retry_ms=2000
  fw_args=("longlink" tcp "heartbeat=$hb_ms" "retry=$retry_ms" network-wait=3000 flight=2000
    connect=2000 "idle=$(( hb_ms * 4 + 20000 ))" rows run=40000)
  bridge_args+=(--monitor "127.0.0.1:$mport" --link-down-for 7s --refuse-for 27s --seconds 60)
else
  # Long enough for the lab's quiet spells (it only speaks in the check's
  # request steps); the smoltcp-nal path needs one (see longlink-nal Quirks).
  fw_args+=("idle=$(( hb_ms * 4 + 20000 ))")
fi

semi="enable=on,target=native"
for a in "${fw_args[@]}"; do semi+=",arg=$a"; done

monitor=(-monitor none)
[[ -n $rows ]] && monitor=(-S -monitor "tcp:127.0.0.1:$mport,server=on,wait=off")
start_qemu() {
  qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic "${monitor[@]}" -serial none \
    -no-reboot -semihosting-config "$semi" \
    -netdev "dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=$qport,remote.type=inet,remote.host=127.0.0.1,remote.port=$bport" \
    -net nic,netdev=n0,model=lan9118 \
    -kernel "$ELF" >"$LOG/firmware.log" 2>&1 &
  pids+=($!)
}
show_logs() {
  echo "--- firmware (semihosting) ---"; cat "$LOG/firmware.log"
  echo "--- bridge ---"; cat "$LOG/bridge.log"
}

if [[ -n $dog ]]; then
  SECONDS=0
  timeout 60 qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic -monitor none -serial none \
    -no-reboot -semihosting-config "enable=on,target=native,arg=longlink,arg=hang=3000,arg=run=20000" \
    -kernel "$ELF" >"$LOG/firmware.log" 2>&1 || true
  cat "$LOG/firmware.log"
  if grep -q "watchdog: bark" "$LOG/firmware.log" && ! grep -q "^PASS" "$LOG/firmware.log" &&
    ((SECONDS < 15)); then
    echo "qemu-lab: watchdog PASSED: barked and reset the machine ${SECONDS}s after boot"
    exit 0
  fi
  echo "qemu-lab: watchdog FAILED (no bark, or no reset before the firmware's end)"
  exit 1
fi

echo "qemu-lab: firmware --features $feature, $transport, heartbeat ${hb_ms}ms, retry ${retry_ms}ms; QEMU udp 127.0.0.1:$qport <-> bridge 127.0.0.1:$bport -> server 127.0.0.1:$lport; logs in $LOG" >&2
SECONDS=0
if [[ -n $target ]]; then
  "$BRIDGE" "${bridge_args[@]}" >"$LOG/bridge.log" 2>&1 &
  pids+=($!)
  start_qemu
  qemu_pid=${pids[-1]}
  tail -n +1 -f "$LOG/bridge.log" "$LOG/firmware.log" &
  pids+=($!)
  if [[ -n ${QEMU_SECONDS:-} ]]; then
    sleep "$QEMU_SECONDS" &
    wait $!
  else
    wait "$qemu_pid" || true
  fi
  exit 0
fi

if [[ -n $fault ]]; then
  (while sleep 1; do echo "back ping"; done) |
    "$LONGLINK" lab --listen "127.0.0.1:$lport" ${udp:+--udp} >"$LOG/lab.log" 2>&1 &
  pids+=($!)
  sleep 0.3
  "$BRIDGE" "${bridge_args[@]}" >"$LOG/bridge.log" 2>&1 &
  bridge_pid=$!
  pids+=($bridge_pid)
  start_qemu
  verdict=0
  wait "$bridge_pid" || verdict=$?
  # The firmware must have noticed the outage itself (not been told).
  grep -q "connection lost" "$LOG/firmware.log" || verdict=1
  show_logs
  echo "qemu-lab: fault run ($transport) $([[ $verdict == 0 ]] && echo PASSED || echo FAILED) in ${SECONDS}s"
  exit "$verdict"
fi

if [[ -n $rows ]]; then
  "$LONGLINK" lab --listen "127.0.0.1:$lport" >"$LOG/lab.log" 2>&1 &
  pids+=($!)
  start_qemu
  qemu_pid=${pids[-1]}
  sleep 0.3
  "$BRIDGE" "${bridge_args[@]}" >"$LOG/bridge.log" 2>&1 &
  pids+=($!)
  verdict=0
  # The firmware's semihosting exit code is the verdict.
  timeout "${QEMU_SECONDS:-300}" tail --pid="$qemu_pid" -f /dev/null || verdict=124
  wait "$qemu_pid" || verdict=$?
  show_logs
  echo "qemu-lab: modem rows (flight mode, link reset) $([[ $verdict == 0 ]] && echo PASSED || echo "FAILED ($verdict)") in ${SECONDS}s"
  exit "$verdict"
fi

timeout "${QEMU_SECONDS:-300}" "$LONGLINK" lab --check --listen "127.0.0.1:$lport" ${udp:+--udp} \
  --timeout "$(( hb_ms * 3 / 1000 + retry_ms / 1000 + 30 ))s" >"$LOG/check.txt" 2>"$LOG/lab.log" &
lab_pid=$!
pids+=($lab_pid)
sleep 0.3
"$BRIDGE" "${bridge_args[@]}" >"$LOG/bridge.log" 2>&1 &
pids+=($!)
start_qemu
verdict=0
wait "$lab_pid" || verdict=$?
show_logs
echo "--- longlink lab --check ($transport) ---"
cat "$LOG/check.txt"
echo "qemu-lab: lab --check ($transport) $([[ $verdict == 0 ]] && echo PASSED || echo "FAILED ($verdict)") in ${SECONDS}s"
exit "$verdict"
