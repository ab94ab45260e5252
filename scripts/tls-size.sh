#!/usr/bin/env bash
# Flash and RAM that the nal-async `tls` feature adds on a Cortex-M4
# (thumbv7em-none-eabihf, opt-level "s", LTO, codegen-units 1,
# panic=abort): scripts/tls-size builds the nal-async driver (core +
# TestProtocol) over an opaque TCP stack, without and with the embedded-tls
# task, and prints the section sizes of both and their difference. With
# qemu-system-arm installed, it also runs both and prints the sizes of the
# futures and buffers that live on the tasks' stacks.
# Needs: the thumbv7em-none-eabihf target, GNU binutils `size`.
set -euo pipefail
cd "$(dirname "$0")/tls-size"
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true
ELF=${CARGO_TARGET_DIR:-target}/thumbv7em-none-eabihf/release/longlink-tls-size
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for v in plain tls; do
  feat=""; [[ $v == tls ]] && feat="--features tls"
  cargo build -q --release $feat
  cp "$ELF" "$TMP/$v.elf"
done
sec() { size -A "$1" | awk -v s="$2" '$1 == s { print $2 }'; }
printf '%-10s %8s %8s %8s\n' section plain tls added
for s in .text .rodata .data .bss; do
  a=$(sec "$TMP/plain.elf" "$s"); b=$(sec "$TMP/tls.elf" "$s")
  printf '%-10s %8d %8d %8d\n' "$s" "${a:-0}" "${b:-0}" "$(( ${b:-0} - ${a:-0} ))"
done
flash() { echo $(( $(sec "$1" .text) + $(sec "$1" .rodata) + $(sec "$1" .data) )); }
echo "flash added (.text+.rodata+.data): $(( $(flash "$TMP/tls.elf") - $(flash "$TMP/plain.elf") )) bytes"
if command -v qemu-system-arm >/dev/null; then
  for v in plain tls; do
    echo "-- $v (on target):"
    timeout 30 qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic \
      -semihosting-config enable=on,target=native -kernel "$TMP/$v.elf" | grep '^size_of:'
  done
fi
