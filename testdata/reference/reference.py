#!/usr/bin/env python3
"""An independent reference for `fastflow run --until-end`, written from SPEC.md alone.

It runs SPEC's api-health pipeline (tumbling, hopping or session windows) the
simplest way there is: record by record, in Python, with exact arithmetic
(Fraction sums, sort-based nearest-rank percentiles) and nothing shared with
the Go code. TestPythonReference (cmd/fastflow/reference_test.go) runs it and
the binary on the same log and compares what they print.

    reference.py [--window tumbling|hopping|session] [--size MS] [--advance MS] [--gap MS]
                 one FILE      # FILE: one record per line, as `fastflow produce` takes them;
                               # the log holds them in one partition, in this order:
                               # every line `run` prints (windows, revisions, alerts, stats)
    reference.py [window flags] final FILE
                               # FILE: `fastflow consume` output of a topic of any number
                               # of partitions: each window's final result (tumbling, hopping)

Semantics, from SPEC ("Semantics of time, windows and results"):
- a record that is not JSON (Python's json without NaN/Infinity) is invalid_json, one that
  is not an object not_object; a time field absent or null is missing_time, one that is not
  a number bad_time; a number of ms is floored to the millisecond;
- watermark_p = max event time seen in partition p - max_out_of_order; a record is accepted
  into window w unless watermark_p >= w.end + allowed_lateness; refused by all: late_dropped;
- one partition: a window is emitted once the watermark reaches its end, windows closed
  together by end, start, key; a late record accepted into an emitted window re-emits it
  with revision + 1; at the end every open window is emitted;
- sessions (Flink's): an event opens [t, t+gap); sessions that meet merge; the merged
  session is late only if past its end + allowed_lateness; a merge of an emitted session
  is emitted with the largest revision + 1;
- alerts, per key and rule, on each emitted result: firing once `for` consecutive windows
  of the key (by start; a revision replaces its window's verdict) meet the condition,
  resolved on the first that does not; only transitions;
- the final results over several partitions are the events each partition's own
  watermark accepted, merged per key and window (SPEC: results merge exactly across
  partitions).
"""
import argparse
import datetime
import json
import math
import sys
from fractions import Fraction

PIPELINE = "api-health"
OOO, LATENESS = 5000, 60000  # time: {max_out_of_order: 5s, allowed_lateness: 1m}
ALERTS = [  # name, metric, threshold, for, severity (SPEC's example: `>`)
    ("high-error-rate", "error_rate", 0.05, 2, "critical"),
    ("slow-p95", "p95_response_time", 2000, 1, "warning"),
]
NO_WATERMARK = None
YEAR_0, YEAR_9999 = -62167219200000, 253402300799999  # 0000-01-01 .. 9999-12-31T23:59:59.999Z


def rfc3339(ms):
    """Go's time.RFC3339Nano in UTC: the fraction without trailing zeros."""
    d = datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.timezone.utc)
    s = d.strftime("%Y-%m-%dT%H:%M:%S")
    if ms % 1000:
        s += ("." + "%03d" % (ms % 1000)).rstrip("0")
    return s + "Z"


def reject_constant(c):
    raise ValueError("not JSON: " + c)


class Event:
    __slots__ = ("t", "key", "error", "value")


def event(line, stats):
    """The event a record holds, or None after counting why it is rejected."""
    stats["records"] += 1
    rejected = stats["rejected"]
    try:
        ev = json.loads(line, parse_constant=reject_constant)
    except ValueError:
        rejected["invalid_json"] = rejected.get("invalid_json", 0) + 1
        return None
    reason = None
    if not isinstance(ev, dict):
        reason = "not_object"
    elif ev.get("ts") is None:
        reason = "missing_time"
    elif isinstance(ev["ts"], bool) or not isinstance(ev["ts"], (int, float)):
        reason = "bad_time"
    if reason:
        rejected[reason] = rejected.get(reason, 0) + 1
        return None
    ts = ev["ts"]
    t = ts if isinstance(ts, int) else math.floor(Fraction(repr(ts))) if math.isfinite(ts) else None
    if t is None or not YEAR_0 <= t <= YEAR_9999:  # outside what RFC 3339 writes
        rejected["bad_time"] = rejected.get("bad_time", 0) + 1
        return None
    stats["events"] += 1
    e = Event()
    e.t = t
    e.key = ev.get("service")
    e.error = ev.get("status") == "error"
    v = ev.get("response_time")
    e.value = v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
    return e


class Window:
    def __init__(self, key, start, end):
        self.key, self.start, self.end = key, start, end
        self.count, self.errors, self.values = 0, 0, []
        self.revision = -1  # the last revision emitted
        self.emitted = False

    def add(self, e):
        self.count += 1
        self.errors += e.error
        if e.value is not None:
            self.values.append(e.value)

    def absorb(self, o):
        self.count += o.count
        self.errors += o.errors
        self.values += o.values
        self.revision = max(self.revision, o.revision)

    def metrics(self):
        m = {"request_count": self.count, "error_count": self.errors,
             "error_rate": self.errors / self.count if self.count else None}
        if self.values:
            m["avg_response_time"] = float(sum(map(Fraction, self.values)) / len(self.values))
            m["max_response_time"] = max(self.values)
            s = sorted(self.values)
            m["p95_response_time"] = s[math.ceil(0.95 * len(s)) - 1]
        else:
            m["avg_response_time"] = m["max_response_time"] = m["p95_response_time"] = None
        m["throughput"] = self.count / ((self.end - self.start) / 1000)
        return m

    def line(self):
        return {"type": "window", "pipeline": PIPELINE, "key": {"service": self.key},
                "window_start": rfc3339(self.start), "window_end": rfc3339(self.end),
                "revision": self.revision, "metrics": self.metrics()}


def starts(t, size, advance):
    """The starts of the tumbling or hopping windows [s, s+size) that hold t."""
    first = t - t % advance - size + advance
    return [s for s in range(first, t + 1, advance) if s <= t < s + size]


class Alerts:
    def __init__(self):
        self.met = {}  # (key, rule) -> {window start: condition met}
        self.firing = {}

    def evaluate(self, w, m, out):
        for name, metric, threshold, n, severity in ALERTS:
            v = m[metric]
            verdicts = self.met.setdefault((w.key, name), {})
            verdicts[w.start] = v is not None and v > threshold
            last = [verdicts[s] for s in sorted(verdicts)[-n:]]
            firing = len(last) == n and all(last)
            if firing != self.firing.get((w.key, name), False):
                self.firing[(w.key, name)] = firing
                out.append({"type": "alert", "pipeline": PIPELINE, "alert": name, "severity": severity,
                            "state": "firing" if firing else "resolved", "key": {"service": w.key},
                            "window_start": rfc3339(w.start), "window_end": rfc3339(w.end),
                            "metric": metric, "value": v, "threshold": threshold})


def order(w):
    return (w.end, w.start, json.dumps(w.key))


def one_partition(lines, args):
    stats = {"type": "stats", "pipeline": PIPELINE, "records": 0, "events": 0, "rejected": {}, "late_dropped": 0}
    out, alerts = [], Alerts()
    windows = {}  # (key, start) -> Window; sessions: key -> [Window]
    max_t, wm = None, NO_WATERMARK

    def emit(w):
        w.emitted, w.revision = True, w.revision + 1
        line = w.line()
        out.append(line)
        alerts.evaluate(w, line["metrics"], out)

    def late(end):
        return wm is not None and wm >= end + LATENESS

    for line in lines:
        e = event(line, stats)
        if e is None:
            continue
        if max_t is None or e.t > max_t:
            max_t, wm = e.t, e.t - OOO
        accepted = False
        if args.window == "session":
            sessions = windows.setdefault(e.key, [])
            start, end, merged = e.t, e.t + args.gap, []
            grew = True
            while grew:
                grew = False
                for s in sessions:
                    if s not in merged and s.start <= end and s.end >= start:
                        merged.append(s)
                        start, end, grew = min(start, s.start), max(end, s.end), True
            if not late(end):
                accepted = True
                n = Window(e.key, start, end)
                for s in merged:
                    sessions.remove(s)
                    n.absorb(s)
                n.add(e)
                sessions.append(n)
        else:
            for s in starts(e.t, args.size, args.advance):
                if late(s + args.size):
                    continue
                accepted = True
                w = windows.get((e.key, s))
                if w is None:
                    w = windows[(e.key, s)] = Window(e.key, s, s + args.size)
                w.add(e)
                if w.emitted:
                    emit(w)
        if not accepted:
            stats["late_dropped"] += 1
        live = [w for ws in windows.values() for w in ws] if args.window == "session" else list(windows.values())
        for w in sorted((w for w in live if not w.emitted and wm >= w.end), key=order):
            emit(w)
        if args.window == "session":
            for ws in windows.values():
                ws[:] = [w for w in ws if not late(w.end)]
        else:
            for k in [k for k, w in windows.items() if late(w.end)]:
                del windows[k]
    live = [w for ws in windows.values() for w in ws] if args.window == "session" else list(windows.values())
    for w in sorted((w for w in live if not w.emitted), key=order):
        emit(w)
    return out + [stats]


def final(consumed, args):
    if args.window == "session":
        sys.exit("reference.py: final takes tumbling or hopping windows")
    stats = {"type": "stats", "pipeline": PIPELINE, "records": 0, "events": 0, "rejected": {}, "late_dropped": 0}
    partitions = {}
    for line in consumed:
        r = json.loads(line)
        v = r["value"]
        partitions.setdefault(r["partition"], []).append(v if isinstance(v, str) else json.dumps(v))
    windows = {}
    for p in sorted(partitions):
        wm = None
        for line in partitions[p]:
            e = event(line, stats)
            if e is None:
                continue
            wm = e.t - OOO if wm is None else max(wm, e.t - OOO)
            accepted = False
            for s in starts(e.t, args.size, args.advance):
                if wm >= s + args.size + LATENESS:
                    continue
                accepted = True
                w = windows.get((e.key, s))
                if w is None:
                    w = windows[(e.key, s)] = Window(e.key, s, s + args.size)
                w.add(e)
            if not accepted:
                stats["late_dropped"] += 1
    out = []
    for w in sorted(windows.values(), key=order):
        w.revision = 0
        out.append(w.line())
    return out + [stats]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--window", choices=["tumbling", "hopping", "session"], default="tumbling")
    ap.add_argument("--size", type=int, default=60000, help="window size, ms")
    ap.add_argument("--advance", type=int, help="hopping advance, ms (default: the size)")
    ap.add_argument("--gap", type=int, default=30000, help="session gap, ms")
    ap.add_argument("mode", choices=["one", "final"])
    ap.add_argument("file")
    args = ap.parse_args()
    args.advance = args.advance or args.size
    with open(args.file) as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    out = one_partition(lines, args) if args.mode == "one" else final(lines, args)
    for o in out:
        print(json.dumps(o, separators=(",", ":")))


if __name__ == "__main__":
    main()
