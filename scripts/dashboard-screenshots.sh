#!/usr/bin/env bash
# Renews docs/dashboard.png and docs/dashboard-phone.png (shown in the
# README): runs the dashboard's browser test, which starts the CRM app, sends
# it deliveries, and screenshots the page in a real headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_SCREENSHOTS=1 bash scripts/test.sh --test browser -- --nocapture
