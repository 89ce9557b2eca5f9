#!/usr/bin/env python3
"""Events for reference.py: SPEC's api-health traffic with what breaks pipelines.

    gen.py SEED N [STEP_MS [every-agg UNIT]]
        # N lines on stdout; event time advances 0..STEP_MS (default 60) a line;
        # every-agg: events for reference.py's every-agg pipeline, times in UNIT

Five services from 2026-11-22T10:00:00Z; an error incident (payments, minutes 20-25: 30%
errors) and a latency incident (search, minutes 40-44: 30x). Besides: events out of order
within max_out_of_order (5%), late but within allowed_lateness or past it (3%), a
response_time as a string, null, missing or below a millisecond, fractional milliseconds
in ts, and rejected records of every reason (invalid JSON, NaN, not an object, time
missing, null or a string).
"""
import json
import random
import sys

import every_agg

seed, n = int(sys.argv[1]), int(sys.argv[2])
step = int(sys.argv[3]) if len(sys.argv) > 3 else 60
rnd = random.Random(seed)
base = 1795341600000  # 2026-11-22T10:00:00Z
if len(sys.argv) > 4:
    every_agg.generate(rnd, n, step, base, sys.argv[5])
    sys.exit()
services = ["payments", "checkout", "auth", "search", "inventory"]
t = base
for _ in range(n):
    t += rnd.randint(0, step)
    ts = every_agg.jitter(rnd, t, 5000, 70000, 400000)  # max_out_of_order 5s, allowed_lateness 1m
    svc = rnd.choice(services)
    minute = (t - base) // 60000
    err = 0.3 if svc == "payments" and 20 <= minute < 26 else 0.02
    rt = rnd.lognormvariate(4.5, 0.8)
    if svc == "search" and 40 <= minute < 45:
        rt *= 30
    ev = {"ts": ts, "service": svc, "status": "error" if rnd.random() < err else "ok"}
    k = rnd.random()
    if k < 0.9:
        ev["response_time"] = round(rt, rnd.choice([0, 1, 3]))
    elif k < 0.93:
        ev["response_time"] = str(round(rt, 1))
    elif k < 0.95:
        ev["response_time"] = None
    elif k < 0.96:
        ev["response_time"] = 0.0005 + rnd.random() * 0.01
    line = json.dumps(ev, separators=(",", ":"))
    b = rnd.random()
    if b < 0.003:
        line = line[:-3]  # cut: invalid JSON
    elif b < 0.005:
        line = "[1,2,3]"
    elif b < 0.007:
        line = json.dumps({k: v for k, v in ev.items() if k != "ts"})
    elif b < 0.008:
        line = json.dumps(dict(ev, ts=str(ts)))
    elif b < 0.009:
        line = json.dumps(dict(ev, ts=None))
    elif b < 0.010:
        line = json.dumps(dict(ev, ts=ts + 0.7))
    elif b < 0.011:
        line = "42"
    elif b < 0.012:
        line = '{"ts": NaN, "service": "x"}'
    print(line)
