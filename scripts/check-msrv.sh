#!/usr/bin/env bash
# Fails when a locked dependency declares a `rust-version` above ours.
#
# Our `rust-version` (Cargo.toml) is the highest one declared in the locked
# dependency set, every feature on (dev-dependencies included, since the
# tests are built too). This compares them through `cargo metadata`.
#
# It cannot prove that the crate builds with that compiler: only one
# toolchain (the current stable) is installed on the machines this project
# runs on, so a real MSRV build (`cargo +1.88 check`) is not possible here.
# What stands in for it: this check, `.cargo/config.toml`'s
# `incompatible-rust-versions = "fallback"` (lock resolution prefers versions
# our rust-version can build), and clippy's `incompatible_msrv` lint, which
# flags uses of standard-library APIs stabilised after our rust-version.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --all-features --locked | python3 -c '
import json, sys

def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

meta = json.load(sys.stdin)
root = meta["resolve"]["root"]
ours = next(p for p in meta["packages"] if p["id"] == root)
if not ours.get("rust_version"):
    sys.exit("Cargo.toml declares no rust-version")
rust_version = ours["rust_version"]
limit = version(rust_version)
locked = {node["id"] for node in meta["resolve"]["nodes"]}
above = sorted(
    (p["name"], p["version"], p["rust_version"])
    for p in meta["packages"]
    if p["id"] in locked and p.get("rust_version") and version(p["rust_version"]) > limit
)
highest = max(
    (version(p["rust_version"]), p["rust_version"], p["name"])
    for p in meta["packages"]
    if p["id"] in locked and p.get("rust_version")
)
if above:
    print(f"rust-version {rust_version} is below what these locked dependencies declare:")
    for name, ver, rust in above:
        print(f"  {name} {ver}: rust-version {rust}")
    print("raise rust-version in Cargo.toml, or lock older versions (cargo update -p NAME --precise VERSION)")
    sys.exit(1)
print(f"ok: rust-version {rust_version}; the highest a locked dependency declares is {highest[1]} ({highest[2]})")
'
