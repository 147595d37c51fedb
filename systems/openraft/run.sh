#!/usr/bin/env bash
# run.sh VERSION <faultline arguments...>
# run.sh VERSION test [cargo test arguments...]
#
# Build faultline with openraft VERSION (a 0.9.x from crates.io, yanked ones too) registered as
# a system under test, then run it: `faultline-openraft` takes faultline's own arguments, and its
# exit code and stdout (`--json` too) are faultline's. Build output goes to stderr. With `test`,
# run this adapter's own tests against VERSION instead.
#
# Each version gets its own cached copy of the crate and its own target dir under
# systems/openraft/target-VERSION/, so switching versions never rebuilds another version's tree
# and the committed Cargo.lock (pinned at 0.9.24) is never touched:
#
#   target-VERSION/crate/   Cargo.toml (openraft requirement loosened to ^0.9, path
#                           dependencies made absolute), a Cargo.lock moved with
#                           `cargo update -p openraft --precise VERSION`, and symlinks to src/,
#                           tests/, build.rs and scenarios/
#   target-VERSION/target/  that version's build; seeded from ./target on first use (a copy, so
#                           the dependencies compiled for 0.9.24 are reused, not rebuilt)
#
# Examples:
#   ./run.sh 0.9.24 list
#   ./run.sh 0.9.24 run openraft-chaos --seeds 20
#   ./run.sh 0.9.25 run openraft-quorum-commit --seeds 200 --json
#   ./run.sh 0.9.14 run openraft-stale-vote --seeds 500      # yanked: cargo warns and uses it
#   ./run.sh 0.9.25 test --test cluster -- --nocapture
#   OPENRAFT_FEATURES=single-term-leader ./run.sh 0.9.25 run openraft-failover --seeds 100
#
# OPENRAFT_FEATURES: this crate's cargo features for the build (`single-term-leader`: openraft's
# one-leader-per-term mode). Feature sets share a version's cache (cargo keeps their artifacts
# apart); the binary is rebuilt, i.e. relinked, whenever the set changes.
#
# Builds are niced; never set RUSTFLAGS (it would override .cargo/config.toml's --cfg madsim
# and --cfg tokio_unstable).
set -euo pipefail

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
version="$1"
shift
if [[ ! "$version" =~ ^0\.9\.[0-9]+$ ]]; then
  echo "run.sh: VERSION must be a 0.9.x openraft release (got '$version')" >&2
  exit 2
fi
if [[ -n "${RUSTFLAGS:-}" ]]; then
  echo "run.sh: RUSTFLAGS is set; it would override --cfg madsim from .cargo/config.toml. Unset it." >&2
  exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="$here/target-$version"
crate="$cache/crate"
mkdir -p "$crate"

# The crate copy: manifest with a loosened requirement and absolute paths to the harness,
# sources by symlink (always current).
sed -E -e 's/^openraft = \{ version = "=[0-9.]+"/openraft = { version = "0.9"/' \
  -e "s#path = \"\\.\\./\\.\\./#path = \"$root/#" "$here/Cargo.toml" > "$crate/Cargo.toml.new"
grep -q '^openraft = { version = "0.9"' "$crate/Cargo.toml.new" || {
  echo "run.sh: could not loosen the openraft requirement in Cargo.toml" >&2
  exit 2
}
if grep -q 'path = "\.\./' "$crate/Cargo.toml.new"; then
  echo "run.sh: a relative path dependency is left in the crate copy's Cargo.toml" >&2
  exit 2
fi
# Replace only on change: a fresh mtime would make cargo rebuild the crate every run.
if cmp -s "$crate/Cargo.toml.new" "$crate/Cargo.toml"; then
  rm "$crate/Cargo.toml.new"
else
  mv "$crate/Cargo.toml.new" "$crate/Cargo.toml"
fi
for f in src tests scenarios build.rs; do
  ln -sfn "$here/$f" "$crate/$f"
done
[[ -f "$crate/Cargo.lock" ]] || cp "$here/Cargo.lock" "$crate/Cargo.lock"

export CARGO_TARGET_DIR="$cache/target"
if [[ ! -d "$CARGO_TARGET_DIR" && -d "$here/target" ]]; then
  echo "run.sh: seeding $CARGO_TARGET_DIR from ./target (reuses compiled dependencies)" >&2
  cp -a --reflink=auto "$here/target" "$CARGO_TARGET_DIR"
fi

locked() { grep -A1 '^name = "openraft"$' "$crate/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p'; }
if [[ "$(locked)" != "$version" ]]; then
  echo "run.sh: openraft $(locked) -> $version" >&2
  (cd "$crate" && nice -n 10 cargo update -p openraft --precise "$version" >&2)
fi
echo "run.sh: openraft $(locked), target $CARGO_TARGET_DIR" >&2

features=()
if [[ -n "${OPENRAFT_FEATURES:-}" ]]; then
  features=(--features "$OPENRAFT_FEATURES")
fi
if [[ "${1:-}" == test ]]; then
  shift
  cd "$crate"
  exec nice -n 10 cargo test "${features[@]}" "$@"
fi
# Build in the crate copy, run from the caller's directory (scenario paths are theirs). Replay
# commands in reports name this script and version.
export FAULTLINE_COMMAND="${FAULTLINE_COMMAND:-${OPENRAFT_FEATURES:+OPENRAFT_FEATURES=$OPENRAFT_FEATURES }$0 $version}"
(cd "$crate" && nice -n 10 cargo build --release "${features[@]}" --bin faultline-openraft >&2)
exec "$CARGO_TARGET_DIR/release/faultline-openraft" "$@"
