#!/usr/bin/env bash
# Runs the README's "Test your own device logic" exactly as written: a new
# crate from its code blocks (marked `<!-- walkthrough: FILE -->`), whose
# simulator test must fail the way the README says, then the fix (marked
# `<!-- walkthrough: fix FILE -->`), after which it must pass.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap '[ -n "${WALKTHROUGH_KEEP:-}" ] || rm -rf "$work"' EXIT; echo "walkthrough: in $work"
export CARGO_TARGET_DIR="${WALKTHROUGH_TARGET:-$root/target/walkthrough}"

cargo new -q --lib --vcs none "$work/my-device"
crate="$work/my-device"
python3 - "$root/README.md" "$crate" "$root" <<'PY'
import re, sys, pathlib
readme, crate, root = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
text = open(readme).read()
section = text.split("## Test your own device logic", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"<!-- walkthrough: ([^>]+?) -->\n```[a-z]*\n(.*?)```", section, re.S)
files = dict(blocks)
assert {"Cargo.toml", "src/lib.rs", "tests/sim.rs", "fix src/lib.rs"} <= files.keys(), files.keys()
# The README's dependencies, with this checkout's paths for the two crates.
deps = files["Cargo.toml"]
for name in ("longlink-core", "longlink-sim", "proptest"):
    assert name in deps, name
deps = deps.replace('longlink-core = "0.1"', f'longlink-core = {{ path = "{root}/core" }}')
deps = deps.replace('longlink-sim = "0.1"', f'longlink-sim = {{ path = "{root}/testing/sim" }}')
manifest = (crate / "Cargo.toml").read_text().split("[dependencies]")[0]
(crate / "Cargo.toml").write_text(manifest + deps)
(crate / "src/lib.rs").write_text(files["src/lib.rs"])
(crate / "tests").mkdir(exist_ok=True)
(crate / "tests/sim.rs").write_text(files["tests/sim.rs"])
# The fix replaces the `if msg == b"READ" {` block, matched by indentation.
fix = files["fix src/lib.rs"]
lines = files["src/lib.rs"].splitlines(keepends=True)
first = fix.splitlines()[0]
start = next(i for i, l in enumerate(lines) if l.rstrip() == first.rstrip())
indent = len(first) - len(first.lstrip())
end = next(i for i in range(start + 1, len(lines)) if lines[i].rstrip() == " " * indent + "}")
(crate / "fixed.rs").write_text("".join(lines[:start]) + fix + "".join(lines[end + 1:]))
PY
cp "$root/Cargo.lock" "$crate/Cargo.lock"

echo "walkthrough: step 4, the test must fail"
if (cd "$crate" && cargo test -q 2>&1) > "$work/fail.txt"; then
  cat "$work/fail.txt"
  echo "walkthrough: the broken handler passed" >&2
  exit 1
fi
grep -m1 -E '^(Test failed: )?seed [0-9]+: ' "$work/fail.txt" || { cat "$work/fail.txt"; echo "walkthrough: no simulator failure in the output" >&2; exit 1; }
grep -q -E 'queued .*"R [0-9]+".*expected Some\("R [0-9]+"\)' "$work/fail.txt" || { cat "$work/fail.txt"; echo "walkthrough: not the README's failure" >&2; exit 1; }
grep -q 'transcript (the last' "$work/fail.txt" || { echo "walkthrough: no transcript" >&2; exit 1; }

echo "walkthrough: step 5, fixed, the test must pass"
# Written, not moved: a moved file keeps its old mtime, and cargo would
# take the broken build for fresh.
cat "$crate/fixed.rs" > "$crate/src/lib.rs"
(cd "$crate" && cargo test -q 2>&1) > "$work/pass.txt" || { cat "$work/pass.txt"; echo "walkthrough: the fixed handler failed" >&2; exit 1; }
grep -E 'test result: ok\. 1 passed' "$work/pass.txt"
echo "walkthrough: ok"
