#!/usr/bin/env bash
# Renders a known-failing seed's HTML timeline in headless Chromium and checks that the lanes and
# the red violation markers are actually drawn, and that the page's script ran (hover, click and
# zoom self-test). Unit tests only see the HTML text; this sees the pixels.
#
# Needs Debian's `chromium` (installed here if missing) and python3 (standard library only).
# Artefacts in target/ci/timeline/: the seed's four files, timeline.png, dom.html, chromium.log.
set -euo pipefail
cd "$(dirname "$0")/.."
unset RUSTFLAGS # it would override .cargo/config.toml's `--cfg madsim`

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
# simultaneous-restart-volatile-term fails on about half its seeds; the first failing seed with
# a node abort (committed entries lost, caught at step-up) is searched for below.
SCENARIO=simultaneous-restart-volatile-term
OUT=target/ci/timeline

fail() {
  echo "check-timeline: FAIL: $*" >&2
  exit 1
}

if [ ! -x "$CHROMIUM" ]; then
  echo "check-timeline: $CHROMIUM not found; installing Debian's chromium"
  SUDO=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      SUDO=(sudo -n)
    else
      fail "chromium is missing and cannot be installed: not root and no passwordless sudo (install it with: apt-get install -y chromium)"
    fi
  fi
  mkdir -p target/ci
  if ! { "${SUDO[@]}" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq chromium; } \
    >target/ci/apt-chromium.log 2>&1; then
    tail -20 target/ci/apt-chromium.log >&2
    fail "apt-get install chromium failed (log: target/ci/apt-chromium.log)"
  fi
  [ -x "$CHROMIUM" ] || fail "chromium installed but $CHROMIUM is still missing"
fi
command -v python3 >/dev/null || fail "python3 is required"

rm -rf "$OUT"
mkdir -p "$OUT"
SEED=$(cargo run --release -q -- run "$SCENARIO" --seeds 60 --json 2>/dev/null | python3 -c '
import json, sys
failures = json.load(sys.stdin)["failures"]
rich = [f for f in failures if any(v["kind"] == "node-abort" for v in f["violations"])]
print((rich or failures or [{"seed": ""}])[0]["seed"])
') || true
[ -n "$SEED" ] || fail "no failing seed of $SCENARIO among seeds 1-60"
echo "check-timeline: rendering seed $SEED of $SCENARIO"
set +e
cargo run --release -q -- run "$SCENARIO" --seed "$SEED" --out "$OUT" >"$OUT/run.log" 2>&1
rc=$?
set -e
if [ "$rc" != 1 ]; then
  tail -20 "$OUT/run.log" >&2
  fail "expected seed $SEED of $SCENARIO to fail (exit 1), got exit $rc"
fi
grep -q NON-DETERMINISM "$OUT/run.log" && fail "the failing seed did not reproduce its trace hash"
STEM="$OUT/$SCENARIO-seed-$SEED"
for ext in .json .html .perfetto.json .trace.txt; do
  [ -s "$STEM$ext" ] || fail "run --out did not write $STEM$ext"
done
URL="file://$(realpath "$STEM.html")"

PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT
chrome() {
  # No network (the page must not need one), no GPU, a throwaway profile.
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$PROFILE" --enable-logging=stderr --v=0 "$@"
}
chrome --screenshot="$OUT/timeline.png" --window-size=1400,900 "$URL" \
  >"$OUT/chromium.log" 2>&1 || fail "chromium --screenshot failed (log: $OUT/chromium.log)"
[ -s "$OUT/timeline.png" ] || fail "chromium wrote no screenshot (log: $OUT/chromium.log)"
chrome --window-size=1400,900 --dump-dom "$URL#selftest" >"$OUT/dom.html" 2>>"$OUT/chromium.log" ||
  fail "chromium --dump-dom failed (log: $OUT/chromium.log)"
if grep -E "CONSOLE.*(Uncaught|Error)" "$OUT/chromium.log" >&2; then
  fail "the page's script raised an error"
fi

python3 scripts/check_timeline.py --html "$STEM.html" --png "$OUT/timeline.png" \
  --dom "$OUT/dom.html" --report "$STEM.json" --trace "$STEM.trace.txt"
