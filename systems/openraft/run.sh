#!/usr/bin/env bash
# run.sh VERSION [cargo test arguments...]
#
# Build this adapter against openraft VERSION (a 0.9.x from crates.io, yanked ones too) and run
# its tests. Each version gets its own cached copy of the crate and its own target dir under
# systems/openraft/target-VERSION/, so switching versions never rebuilds another version's tree
# and the committed Cargo.lock (pinned at 0.9.24) is never touched:
#
#   target-VERSION/crate/   Cargo.toml (openraft requirement loosened to ^0.9), a Cargo.lock
#                           moved with `cargo update -p openraft --precise VERSION`, and
#                           symlinks to src/ and tests/
#   target-VERSION/target/  that version's build; seeded from ./target on first use (a copy, so
#                           the dependencies compiled for 0.9.24 are reused, not rebuilt)
#
# Examples:
#   ./run.sh 0.9.24                      # the pinned version
#   ./run.sh 0.9.25 --test cluster -- --nocapture
#   ./run.sh 0.9.14                      # yanked: cargo warns and uses it
#
# The issue's final form is `run.sh VERSION <faultline args>`: the same cached build, then a
# faultline binary built against that version runs scenarios on it. Until the adapter is a
# faultline system under test, the arguments go to `cargo test`.
#
# Builds are niced; never set RUSTFLAGS (it would override .cargo/config.toml's --cfg madsim
# and --cfg tokio_unstable).
set -euo pipefail

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
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
cache="$here/target-$version"
crate="$cache/crate"
mkdir -p "$crate"

# The crate copy: manifest with a loosened requirement, sources by symlink (always current).
sed -E 's/^openraft = \{ version = "=[0-9.]+"/openraft = { version = "0.9"/' "$here/Cargo.toml" > "$crate/Cargo.toml.new"
grep -q '^openraft = { version = "0.9"' "$crate/Cargo.toml.new" || {
  echo "run.sh: could not loosen the openraft requirement in Cargo.toml" >&2
  exit 2
}
# Replace only on change: a fresh mtime would make cargo rebuild the crate every run.
if cmp -s "$crate/Cargo.toml.new" "$crate/Cargo.toml"; then
  rm "$crate/Cargo.toml.new"
else
  mv "$crate/Cargo.toml.new" "$crate/Cargo.toml"
fi
ln -sfn "$here/src" "$crate/src"
ln -sfn "$here/tests" "$crate/tests"
[[ -f "$crate/Cargo.lock" ]] || cp "$here/Cargo.lock" "$crate/Cargo.lock"

export CARGO_TARGET_DIR="$cache/target"
if [[ ! -d "$CARGO_TARGET_DIR" && -d "$here/target" ]]; then
  echo "run.sh: seeding $CARGO_TARGET_DIR from ./target (reuses compiled dependencies)" >&2
  cp -a --reflink=auto "$here/target" "$CARGO_TARGET_DIR"
fi

cd "$crate"
have="$(grep -A1 '^name = "openraft"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')"
if [[ "$have" != "$version" ]]; then
  echo "run.sh: openraft $have -> $version" >&2
  nice -n 10 cargo update -p openraft --precise "$version"
fi
resolved="$(grep -A1 '^name = "openraft"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')"
echo "run.sh: openraft $resolved, target $CARGO_TARGET_DIR" >&2
nice -n 10 cargo test "$@"
