#!/usr/bin/env python3
"""Slow-header figures for the CRM app (issue 10): starts the crm-ingest binary
on 127.0.0.1:38111 with a temporary SQLite file, opens 60 connections that each
send an unfinished request head of PADS x 1 KiB header lines and then stall, and
prints the RSS before/with/after and when the server closed them.

    cargo build -p crm-ingest
    python3 scripts/slow-headers.py target/debug/crm-ingest 380   # 380 KiB heads
    python3 scripts/slow-headers.py target/debug/crm-ingest 8     # 8 KiB heads
"""
import os, socket, subprocess, sys, time, tempfile
binary = sys.argv[1]
d = tempfile.mkdtemp()
env = dict(os.environ, KENDO_WEBHOOK_SECRET="s", CRM_ADMIN_TOKEN="t"*32, CRM_ADDR="127.0.0.1:38111",
           CRM_DB=os.path.join(d, "crm.sqlite3"), RUST_LOG="warn")
p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def rss():
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) / 1024
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", 38111), timeout=1).close(); break
    except OSError: time.sleep(0.1)
time.sleep(0.5)
base = rss()
socks = []
t0 = time.time()
pad = b"X-Pad: " + b"a" * 1000 + b"\r\n"
for i in range(60):
    s = socket.create_connection(("127.0.0.1", 38111))
    s.setblocking(False)
    head = b"POST /webhooks/kendo HTTP/1.1\r\nHost: x\r\n" + pad * int(sys.argv[2])
    sent = 0
    try:
        while sent < len(head):
            sent += s.send(head[sent:])
    except (BlockingIOError, ConnectionResetError, BrokenPipeError):
        pass
    socks.append((s, sent))
time.sleep(0.5)
peak = rss()
closed_at = {}
while time.time() - t0 < 40 and len(closed_at) < 60:
    for i, (s, _) in enumerate(socks):
        if i in closed_at: continue
        try:
            data = s.recv(65536)
            if data == b"": closed_at[i] = time.time() - t0
            else:
                # drain answer (e.g. 431), wait for close
                pass
        except BlockingIOError: pass
        except ConnectionResetError: closed_at[i] = time.time() - t0
    time.sleep(0.05)
after = rss()
print(f"RSS before {base:.1f} MiB, with 60 half-sent heads {peak:.1f} MiB, after {after:.1f} MiB; "
      f"bytes accepted per socket (max) {max(x for _, x in socks)}; closed {len(closed_at)}/60, last after {max(closed_at.values()) if closed_at else None:.2f} s")
p.terminate(); p.wait()
