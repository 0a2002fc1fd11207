#!/usr/bin/env bash
# Builds each README snippet in a fresh crate whose only dependencies are the
# ones listed in the ```toml block above it (kendo-webhooks pointed at this
# checkout, versions pinned by our Cargo.lock), so a missing crate or feature
# fails here. `tests/readme.rs` is the cheap check CI runs on every test; this
# one costs a build of axum and hyper, so it is run by hand:
#
#   bash scripts/check-readme-fresh.sh          # extra arguments go to cargo check, e.g. --offline
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$root" "$work" <<'PY'
import pathlib, re, sys
root, work = map(pathlib.Path, sys.argv[1:])
readme = (root / "README.md").read_text()
blocks = re.findall(r"```toml\n(.*?)```\n\n<!-- snippet: (\S+) -->\n```rust[^\n]*\n(.*?)```", readme, re.S)
if not blocks:
    sys.exit("no ```toml + snippet + ```rust blocks found in README.md")
for toml, path, code in blocks:
    name = pathlib.Path(path).stem.replace("_", "-")
    crate = work / name
    (crate / "src").mkdir(parents=True)
    toml = re.sub(r'path = "\.\./kendo-webhooks/', f'path = "{root}/', toml)
    if "/tests/" in path:
        (crate / "tests").mkdir()
        (crate / "tests" / "snippet.rs").write_text(code)
        (crate / "src" / "lib.rs").write_text("")
    else:
        (crate / "src" / "main.rs").write_text(code)
    (crate / "Cargo.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "0.0.0"\nedition = "2021"\n\n[workspace]\n\n{toml}')
    (crate / "Cargo.lock").write_text((root / "Cargo.lock").read_text())
    print(crate)
PY
for crate in "$work"/*/; do
  echo "== $(basename "$crate")"
  (cd "$crate" && CARGO_TARGET_DIR="$work/target" cargo check --all-targets --quiet "$@")
done
echo "== every README snippet builds in a fresh crate"
