#!/usr/bin/env bash
# TLS handshake time on loopback, rerunnable: TCP connect + full TLS 1.3
# handshake (ECDSA P-256 certificates made in the test) against the rustls
# lab, for the desktop rustls connector and the embedded-tls task, in a
# release build. HANDSHAKES (default 41) per side; prints median/p99/max.
set -euo pipefail
cd "$(dirname "$0")/.."
export HANDSHAKES=${HANDSHAKES:-41}
cargo test -q --release -p longlink-tests --test tls_handshake -- --nocapture --test-threads=1 2>&1 |
  grep -E 'handshake:|test result'
