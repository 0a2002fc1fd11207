#!/usr/bin/env bash
# The crate can be published: `cargo package` builds the packaged crate on its
# own (no fuzz/, scripts or local files), and `cargo publish --dry-run` does
# everything but the upload. Fails on a file that must not be shipped, or one
# over 100 KiB.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

# Runs on a checkout with uncommitted changes too (CI's is clean).
allow_dirty() {
  if [ -n "$(git status --porcelain 2>/dev/null)" ]; then echo --allow-dirty; fi
}

echo "-- cargo package --list"
files=$(cargo package --locked --list $(allow_dirty))
echo "$files" | sed 's/^/   /'
if echo "$files" | grep -E '^(fuzz/|target/|scripts/|\.ci/|\.cargo/|.*\.sqlite3)'; then
  echo "the files above must not be packaged: fix include in Cargo.toml" >&2
  exit 1
fi
large=$(echo "$files" | while read -r f; do
  if [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 102400 ]; then echo "$f"; fi
done)
if [ -n "$large" ]; then
  echo "files over 100 KiB would be packaged: $large" >&2
  exit 1
fi

echo "-- cargo package (builds the packaged crate)"
cargo package --locked $(allow_dirty)
echo "-- cargo publish --dry-run"
cargo publish --dry-run --locked $(allow_dirty)
