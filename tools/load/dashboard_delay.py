#!/usr/bin/env python3
"""Do dashboard readers delay the projection? (issue 18: "with 16 dashboard
loops the projection delay stays <= 2x the idle figure").

Usage: python3 tools/load/dashboard_delay.py URL TOKEN SECRET [SAMPLES] [LOOPS]

Against a running crm-ingest at URL (loopback only), sends SAMPLES signed
`call.uploaded` deliveries one after another and, for each, measures the
projection delay: from its 200 to the first `GET /api/status` whose inbox
`done` count includes it (the worker marks a row done after the projection
committed; the count is read on the inbox's connection, so the probe itself
does not wait behind the dashboards' reads). First with no other traffic (idle), then while LOOPS threads
(default 16) reload the dashboard (`GET /`) as fast as it answers, as
open tabs would. Prints both medians and p90s and their ratio; exits 1 when
the loaded median is above 2x the idle one. Standard library only.
"""

import hashlib
import hmac
import json
import statistics
import sys
import threading
import time
import urllib.request
import uuid


def post_delivery(url, secret, event_id):
    body = json.dumps({
        "id": event_id, "event": "call.uploaded", "created_at": "2026-12-02T08:00:00Z",
        "data": {"callId": "call_" + event_id, "agentId": "agent_delay",
                 "agentName": "Delay Probe", "userId": "user_delay",
                 "teamMemberUserId": "member_delay", "duration": 61.5, "aiScore": "77",
                 "timestamp": "2026-12-02T08:00:00Z"},
    }).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(url + "/webhooks/kendo", data=body, method="POST", headers={
        "content-type": "application/json", "x-kendo-signature": signature,
        "x-kendo-event": "call.uploaded", "x-kendo-delivery-id": "dlv_" + event_id})
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
        if answer.status != 200:
            raise SystemExit(f"delivery answered {answer.status}")


def get(url, token, path, timeout=10):
    request = urllib.request.Request(url + path, headers={"authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.read()


def done_rows(url, token):
    # The inbox's kept counts (its own connection, not the CRM's reader that
    # the dashboards use), so the probe does not queue behind them.
    return json.loads(get(url, token, "/api/status"))["inbox"]["done"]


def projection_delay(url, token, secret):
    event_id = "evt_delay_" + uuid.uuid4().hex
    before = done_rows(url, token)
    post_delivery(url, secret, event_id)
    acknowledged = time.perf_counter()
    deadline = acknowledged + 30
    while time.perf_counter() < deadline:
        if done_rows(url, token) > before:
            return time.perf_counter() - acknowledged
        time.sleep(0.002)
    raise SystemExit(f"{event_id} not projected within 30 s")


def measure(url, token, secret, samples):
    delays = []
    for _ in range(samples):
        delays.append(projection_delay(url, token, secret))
        time.sleep(0.05)
    delays.sort()
    return statistics.median(delays), delays[int(len(delays) * 0.9) - 1]


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    url, token, secret = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    samples = int(sys.argv[4]) if len(sys.argv) > 4 else 30
    loops = int(sys.argv[5]) if len(sys.argv) > 5 else 16

    idle = measure(url, token, secret, samples)
    stop = threading.Event()
    loads = [0] * loops

    def reload_dashboard(i):
        while not stop.is_set():
            get(url, token, "/", timeout=30)
            loads[i] += 1

    threads = [threading.Thread(target=reload_dashboard, args=(i,), daemon=True)
               for i in range(loops)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(1)
    loaded = measure(url, token, secret, samples)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    elapsed = time.perf_counter() - started
    ratio = loaded[0] / idle[0] if idle[0] > 0 else float("inf")
    print(f"idle:   projection delay median {idle[0] * 1000:.1f} ms, p90 {idle[1] * 1000:.1f} ms")
    print(f"loaded: projection delay median {loaded[0] * 1000:.1f} ms, p90 {loaded[1] * 1000:.1f} ms "
          f"({loops} dashboard loops, {sum(loads) / elapsed:.0f} dashboards/s)")
    print(f"RESULT loaded/idle median {ratio:.2f}x (goal <= 2x)")
    sys.exit(0 if ratio <= 2 else 1)


if __name__ == "__main__":
    main()
