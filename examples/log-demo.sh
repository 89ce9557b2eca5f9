#!/usr/bin/env bash
# The log end to end on a fresh data directory: create a topic, produce
# generated JSON events keyed by service, consume them back, use a consumer
# group. Run by `make demo` until `fastflow demo` exists.
set -euo pipefail
bin=${1:-bin/fastflow}
export FASTFLOW_DATA=$(mktemp -d)
trap 'rm -rf "$FASTFLOW_DATA"' EXIT
echo "data directory: $FASTFLOW_DATA"
set -x
$bin topic create events --partitions 6
python3 - > "$FASTFLOW_DATA/events.jsonl" <<'PY'
import json, random
random.seed(1)
services = ["payments", "search", "auth", "checkout"]
t0 = 1795341600000
for i in range(100000):
    s = random.choice(services)
    print(json.dumps({"ts": t0 + i * 5, "service": s,
                      "status": "error" if random.random() < 0.03 else "ok",
                      "response_time": round(random.lognormvariate(4.5, 0.6), 1)},
                     separators=(",", ":")))
PY
time $bin produce events --key-field service --timestamp-field ts "$FASTFLOW_DATA/events.jsonl"
$bin topic describe events
$bin consume events --partition 2 --from 1000 --max 3
$bin consume events --from 2026-11-22T10:05:00Z --max 2
$bin consume events --group audit --max 25000 > /dev/null
$bin group describe audit
