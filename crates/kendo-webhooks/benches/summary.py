#!/usr/bin/env python3
"""Tables for BENCHMARKS.md from criterion's saved estimates.

Run with: python3 crates/kendo-webhooks/benches/summary.py   (after the three `cargo bench` runs)

Reads target/criterion/<group>/<bench>/<param>/new/estimates.json and prints
Markdown tables of medians (with criterion's 95 % interval) and the ratios
the goals are stated in.
"""
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "target", "criterion")


def est(*path):
    p = os.path.join(ROOT, *path, "new", "estimates.json")
    try:
        with open(p) as f:
            e = json.load(f)["median"]
    except (OSError, KeyError, ValueError) as err:
        sys.exit(f"missing {p}: run the benches first ({err})")
    return e["point_estimate"], e["confidence_interval"]["lower_bound"], e["confidence_interval"]["upper_bound"]


def ns(v):
    if v >= 1e6:
        return f"{v / 1e6:.3f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.3f} µs"
    return f"{v:.1f} ns"


def cell(e):
    return f"{ns(e[0])} [{ns(e[1])}, {ns(e[2])}]"


def verify():
    print("| body | floor (HMAC + hex + compare) | floor, not inlined | `Verifier::verify` | ratio | goal ≤ 1.05× |")
    print("|---|---|---|---|---|---|")
    for size in ["256B", "1KiB", "16KiB", "1MiB"]:
        f, n, c = est("verify", "floor", size), est("verify", "floor_not_inlined", size), est("verify", "crate", size)
        r = c[0] / f[0]
        print(f"| {size} | {cell(f)} | {cell(n)} | {cell(c)} | {r:.3f}× | {'met' if r <= 1.05 else 'missed'} |")
    print()
    print("With 1,024 distinct signatures cycled (as real traffic):")
    print()
    print("| body | floor, cycled | `Verifier::verify`, cycled | ratio | goal ≤ 1.05× |")
    print("|---|---|---|---|---|")
    for size in ["256B", "1KiB"]:
        f, c = est("verify", "floor_cycled", size), est("verify", "crate_cycled", size)
        r = c[0] / f[0]
        print(f"| {size} | {cell(f)} | {cell(c)} | {r:.3f}× | {'met' if r <= 1.05 else 'missed'} |")


def pipeline():
    names = [
        ("floor_hmac_parse_1KiB", "floor: HMAC + hex + compare + one serde_json parse (owned)"),
        ("layer_oneshot_1KiB", "whole layer, `oneshot`, new delivery id, LRU full at 100 k"),
        ("noop_inner_oneshot_1KiB", "no-op inner alone, `oneshot` (runtime `block_on` + request drop)"),
        ("part_layer_without_lru_1KiB", "whole layer with a store that remembers nothing"),
        ("part_verify_1KiB", "part: `Verifier::verify`"),
        ("part_floor_parse_1KiB", "part: the floor's parse alone"),
        ("part_delivery_parse_1KiB", "part: `Delivery::parse`"),
        ("part_store_claim_complete_100k", "part: `MemoryStore` claim + complete (full, 100 k)"),
    ]
    floor = est("pipeline", "floor_hmac_parse_1KiB")[0]
    print("| bench | what | median [95 % CI] | ÷ floor |")
    print("|---|---|---|---|")
    for name, what in names:
        e = est("pipeline", name)
        print(f"| `{name}` | {what} | {cell(e)} | {e[0] / floor:.2f}× |")
    layer = est("pipeline", "layer_oneshot_1KiB")[0]
    noop = est("pipeline", "noop_inner_oneshot_1KiB")[0]
    nolru = est("pipeline", "part_layer_without_lru_1KiB")[0]
    print()
    print(f"- layer ÷ floor: **{layer / floor:.2f}×** (goal ≤ 1.3×); "
          f"with the no-op inner's own cost taken off: {(layer - noop) / floor:.2f}×")
    print(f"- without the LRU: {(nolru - noop) / floor:.2f}× the floor (no-op inner's cost taken off); "
          f"the LRU adds {ns(layer - nolru)} per request")


def dedupe():
    print("| capacity | 1 thread: time/op (ops/s) | 2 threads: aggregate time/op (ops/s) | 2-thread ÷ 1-thread throughput | goal ≥ 1 |")
    print("|---|---|---|---|---|")
    for cap in ["cpu_reference", "10k", "1M"]:
        one, two = est("dedupe", "1_thread", cap), est("dedupe", "2_thread", cap)
        r = one[0] / two[0]
        print(f"| {cap} | {cell(one)} ({1e9 / one[0] / 1e6:.2f} M/s) | {cell(two)} ({1e9 / two[0] / 1e6:.2f} M/s) "
              f"| {r:.2f}× | {'(ceiling)' if cap == 'cpu_reference' else ('met' if r >= 1 else 'missed')} |")


if __name__ == "__main__":
    for title, f in [("verify", verify), ("pipeline", pipeline), ("dedupe", dedupe)]:
        print(f"### {title}\n")
        f()
        print()
