#!/usr/bin/env bash
# The published crates can be published: `cargo package` builds each packaged
# crate on its own (path dependencies between them resolved from the packages
# just built, as `cargo publish --workspace` does), and lists what each ships.
# Fails on a file a crate must not ship (another crate's files, tests,
# scripts, local databases) or one over 100 KiB.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
PUBLISHED="kendo-webhooks kendo-webhooks-redis kendo-webhooks-inbox kendo-webhook-cli"

# Runs on a checkout with uncommitted changes too (CI's is clean).
allow_dirty() {
  if [ -n "$(git status --porcelain 2>/dev/null)" ]; then echo --allow-dirty; fi
}

for crate in $PUBLISHED; do
  echo "-- cargo package --list -p $crate"
  files=$(cargo package --locked --list -p "$crate" $(allow_dirty))
  echo "$files" | sed 's/^/   /'
  if echo "$files" | grep -Ev '^(Cargo\.toml|Cargo\.toml\.orig|Cargo\.lock|\.cargo_vcs_info\.json|README\.md|CHANGELOG\.md|LICENSE-MIT|LICENSE-APACHE|src/.*\.rs|migrations/.*\.sql)$'; then
    echo "$crate would ship the files above: fix include in crates/$crate/Cargo.toml" >&2
    exit 1
  fi
  for license in LICENSE-MIT LICENSE-APACHE; do
    echo "$files" | grep -qx "$license" || { echo "$crate does not ship $license" >&2; exit 1; }
  done
  large=$(cd "crates/$crate" && echo "$files" | while read -r f; do
    if [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 102400 ]; then echo "$f"; fi
  done)
  if [ -n "$large" ]; then
    echo "$crate: files over 100 KiB would be packaged: $large" >&2
    exit 1
  fi
done

# `cargo package` builds each crate against the others through a local
# registry it extracts under $CARGO_HOME/registry/src/-<hash of this path>/,
# and it never re-extracts a name and version it finds there. A run from the
# same path with older sources (same version 0.2.0) would leave those sources
# in place and the crates would be verified against them: remove them first.
# Only these path-hashed overlay directories are touched, never crates.io's.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
for crate in $PUBLISHED; do
  rm -rf "$cargo_home"/registry/src/-*/"$crate"-[0-9]*
done

args=""
for crate in $PUBLISHED; do args="$args -p $crate"; done
echo "-- cargo package $args (builds each packaged crate)"
cargo package --locked $args $(allow_dirty)
echo "-- cargo publish --dry-run $args"
cargo publish --dry-run --locked $args $(allow_dirty)
