#!/usr/bin/env bash
# Fails when a locked dependency of a published package declares a
# `rust-version` above that package's own, or when a package declares more
# than its dependencies need.
#
# Each published crate (crates/*, `publish` not false) declares the highest
# `rust-version` found among what building it needs: its normal and build
# dependencies, transitively, with every feature of that crate on
# (`cargo tree -e normal,build`). Dev-dependencies are left out: they build
# the tests, not the crate a user compiles.
#
# It cannot prove that a crate builds with that compiler: only one toolchain
# (the current stable) is installed on the machines this project runs on, so
# a real MSRV build (`cargo +1.88 check`) is not possible here. What stands
# in for it: this check, `.cargo/config.toml`'s
# `incompatible-rust-versions = "fallback"` (lock resolution prefers versions
# our rust-version can build), and clippy's `incompatible_msrv` lint, which
# flags uses of standard-library APIs stabilised after a package's
# rust-version.
set -euo pipefail
cd "$(dirname "$0")/.."
meta=$(mktemp)
trap 'rm -f "$meta"' EXIT
cargo metadata --format-version 1 --all-features --locked >"$meta"
status=0
for manifest in crates/*/Cargo.toml; do
  name=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -1)
  if grep -q '^publish = false' "$manifest"; then continue; fi
  cargo tree -p "$name" -e normal,build --all-features --locked --prefix none -f '{p}' \
    | sed 's/ (.*//' | sort -u \
    | python3 -c '
import json, sys
name, meta_path = sys.argv[1], sys.argv[2]
def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))
meta = json.load(open(meta_path))
by_key = {(p["name"], "v" + p["version"]): p for p in meta["packages"]}
deps = [by_key[tuple(line.split(" ", 1))] for line in sys.stdin.read().split("\n") if line.strip()]
ours = next(p for p in deps if p["name"] == name)
declared = ours.get("rust_version")
if not declared:
    sys.exit(f"{name}: Cargo.toml declares no rust-version")
versioned = [(version(p["rust_version"]), p["rust_version"], p["name"], p["version"]) for p in deps if p.get("rust_version") and p is not ours]
highest = max(versioned)
above = sorted(v for v in versioned if v[0] > version(declared))
if above:
    print(f"{name}: rust-version {declared} is below what these locked dependencies declare:")
    for _, rust, dep, ver in above:
        print(f"  {dep} {ver}: rust-version {rust}")
    sys.exit("raise rust-version, or lock older versions (cargo update -p NAME --precise VERSION)")
if highest[0] < version(declared):
    sys.exit(f"{name}: rust-version {declared} is higher than its dependencies need ({highest[1]}, {highest[2]}): lower it")
print(f"ok: {name} rust-version {declared}; the highest a locked dependency declares is {highest[1]} ({highest[2]} {highest[3]})")
' "$name" "$meta" || status=1
done
exit $status
