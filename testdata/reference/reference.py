#!/usr/bin/env python3
"""An independent reference for `fastflow run --until-end`, written from SPEC.md alone.

It runs one of two pipelines the simplest way there is: record by record, in
Python, with exact arithmetic (Fraction sums, sort-based nearest-rank
percentiles) and nothing shared with the Go code. TestPythonReference and
TestPythonReferenceEveryAgg (cmd/fastflow/reference_test.go) run it and the
binary on the same log and compare what they print.

    reference.py [--pipeline api-health|every-agg] [--unit ms|s|us|ns|rfc3339]
                 [--window tumbling|hopping|session] [--size MS] [--advance MS] [--gap MS]
                 one FILE      # FILE: one record per line, as `fastflow produce` takes them;
                               # the log holds them in one partition, in this order:
                               # every line `run` prints (windows, revisions, alerts, stats)
    reference.py [flags] final FILE
                               # FILE: `fastflow consume` output of a topic of any number
                               # of partitions: each window's final result (tumbling, hopping)

The pipelines are PIPELINES below: SPEC's api-health example, and every-agg, which
has every aggregate, `where` with every operator and literal type, nested fields, a
two-field group key and a time unit of choice (cmd/fastflow/reference_test.go holds
their YAML).

Semantics, from SPEC ("Semantics of time, windows and results"):
- a record that is not JSON (Python's json without NaN/Infinity) is invalid_json, one that
  is not an object not_object; a time field absent or null is missing_time, one of the
  wrong type or format bad_time; event times are floored to the millisecond;
- watermark_p = max event time seen in partition p - max_out_of_order; a record is accepted
  into window w unless watermark_p >= w.end + allowed_lateness; refused by all: late_dropped;
- one partition: a window is emitted once the watermark reaches its end, windows closed
  together by end, start, key; a late record accepted into an emitted window re-emits it
  with revision + 1; at the end every open window is emitted;
- sessions (Flink's): an event opens [t, t+gap); sessions that meet merge; the merged
  session is late only if past its end + allowed_lateness; a merge of an emitted session
  is emitted with the largest revision + 1;
- metrics: count counts the events `where` holds for; sum, avg, min, max and percentile use
  the field's number (float64) and skip events without one; sums and means exact, rounded
  once; percentile the nearest rank (the ceil(q*N)-th value, q the decimal written); ratio of/over (null when
  over is 0); rate of per second of window; no value: null;
- `where`: a missing field, or one of another type than the literal, makes it false; an
  integer compares exactly (past 2^53 too), a number with a fraction or exponent as its float64;
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
import operator
import re
import sys
from fractions import Fraction

OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
YEAR_0, YEAR_9999 = -62167219200000, 253402300799999  # 0000-01-01 .. 9999-12-31T23:59:59.999Z
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
# RFC 3339's date-time, as the generator writes it (parsed by hand: datetime.fromisoformat
# takes other forms too, and before Python 3.11 neither Z nor 9 fraction digits).
RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")
MISSING = object()

# A metric: (name, agg, field or (of, over), where or None, q). A where: (field, op, literal).
# An alert: (name, metric, op, threshold, for, severity).
PIPELINES = {
    "api-health": {
        "time": "ts", "unit": "ms", "ooo": 5000, "lateness": 60000, "group_by": ["service"],
        "metrics": [
            ("request_count", "count", None, None, None),
            ("error_count", "count", None, ("status", "==", "error"), None),
            ("error_rate", "ratio", ("error_count", "request_count"), None, None),
            ("avg_response_time", "avg", "response_time", None, None),
            ("max_response_time", "max", "response_time", None, None),
            ("p95_response_time", "percentile", "response_time", None, 0.95),
            ("throughput", "rate", ("request_count", None), None, None),
        ],
        "alerts": [
            ("high-error-rate", "error_rate", ">", 0.05, 2, "critical"),
            ("slow-p95", "p95_response_time", ">", 2000, 1, "warning"),
        ],
    },
    "every-agg": {
        "time": "meta.t", "unit": "ms", "ooo": 2000, "lateness": 10000, "group_by": ["region", "host.shard"],
        "metrics": [
            ("n", "count", None, None, None),
            ("big", "count", None, ("v", ">=", 100), None),
            ("small", "count", None, ("v", "<", 1.5), None),
            ("not_eu", "count", None, ("region", "!=", "eu"), None),
            ("before_m", "count", None, ("region", "<=", "m"), None),
            ("flagged", "count", None, ("flag", "==", True), None),
            ("unflagged", "count", None, ("flag", "!=", True), None),
            ("noted_null", "count", None, ("note", "==", None), None),
            ("deep", "count", None, ("host.load", ">", 0.5), None),
            ("id_is", "count", None, ("id", "==", 9007199254740993), None),
            ("id_above", "count", None, ("id", ">", 9007199254740992), None),
            ("total", "sum", "v", None, None),
            ("eu_total", "sum", "v", ("region", "==", "eu"), None),
            ("mean", "avg", "v", None, None),
            ("lo", "min", "v", None, None),
            ("hi", "max", "v", None, None),
            ("p_50", "percentile", "v", None, 0.5),
            ("p_99", "percentile", "v", None, 0.99),
            ("p_1", "percentile", "v", None, 0.01),
            ("p_lat", "percentile", "host.lat", None, 0.999),
            ("share", "ratio", ("big", "n"), None, None),
            ("flag_share", "ratio", ("flagged", "big"), None, None),
            ("per_s", "rate", ("n", None), None, None),
        ],
        "alerts": [
            ("many-big", "big", ">=", 3, 2, "warning"),
            ("low-min", "lo", "<", 0, 1, "info"),
        ],
    },
}


def rfc3339(ms):
    """Go's time.RFC3339Nano in UTC: the fraction without trailing zeros."""
    d = EPOCH + datetime.timedelta(milliseconds=ms)
    s = d.strftime("%Y-%m-%dT%H:%M:%S")
    if ms % 1000:
        s += ("." + "%03d" % (ms % 1000)).rstrip("0")
    return s + "Z"


class Num(float):
    """A JSON number with a fraction or an exponent: its float64 and its text."""

    def __new__(cls, text):
        n = float.__new__(cls, text)
        n.text = text
        return n


def reject_constant(c):
    raise ValueError("not JSON: " + c)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def get(ev, path):
    for name in path.split("."):
        if not isinstance(ev, dict) or name not in ev:
            return MISSING
        ev = ev[name]
    return ev


def event_time(v, unit):
    """(ms, None) or (None, the reason the time is rejected)."""
    if v is MISSING or v is None:
        return None, "missing_time"
    if unit == "rfc3339":
        m = RFC3339.match(v) if isinstance(v, str) else None
        if not m:
            return None, "bad_time"
        year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
        frac, zone = m.group(7) or "", m.group(8)
        try:
            d = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.timezone.utc)
        except ValueError:  # no such day, hour, minute or second (nor a leap second)
            return None, "bad_time"
        t = (d - EPOCH) // datetime.timedelta(milliseconds=1) + int((frac[1:] + "000")[:3])
        if zone != "Z":
            offset = (int(zone[1:3]) * 60 + int(zone[4:6])) * 60000
            t -= offset if zone[0] == "+" else -offset
    else:
        if not is_number(v):
            return None, "bad_time"
        exact = Fraction(v.text) if isinstance(v, Num) else Fraction(v)
        t = math.floor(exact * {"ms": 1, "s": 1000, "us": Fraction(1, 1000), "ns": Fraction(1, 1000000)}[unit])
    if not YEAR_0 <= t <= YEAR_9999:
        return None, "bad_time"
    return t, None


def key_text(v):
    """A group-by value's text, as the key's JSON and as the order of keys."""
    if v is MISSING:
        v = None
    if isinstance(v, Num) and math.isfinite(v) and v == int(v) and abs(v) < 1e21:
        return str(int(v))  # encoding/json writes 1.0 as 1
    return json.dumps(v, separators=(",", ":"))


def as_float(v):
    """A JSON number's float64: past its range, an infinity."""
    try:
        return float(v)
    except OverflowError:
        return math.copysign(math.inf, v)


def holds(ev, where):
    """A where: the field's value and the literal compared, if both are of one type."""
    field, op, lit = where
    v = get(ev, field)
    if lit is None:
        same_type = v is None
    elif isinstance(lit, bool):
        same_type = isinstance(v, bool)
    elif isinstance(lit, str):
        same_type = isinstance(v, str)
    else:
        # An integer compares exactly (Python compares an int with a float exactly),
        # a number with a fraction or an exponent as its float64.
        same_type = is_number(v)
    return same_type and OPS[op](v, lit)


class Event:
    __slots__ = ("t", "key", "text", "doc")


def event(line, p, stats, side=None, at=None):
    """The event a record holds, or None after counting why it is rejected (and, with
    side, noting the record at (partition, offset) as the dead-letter topic holds it)."""
    stats["records"] += 1
    try:
        doc = json.loads(line, parse_constant=reject_constant, parse_float=Num)
    except ValueError:
        return reject(stats, "invalid_json", side, at)
    if not isinstance(doc, dict):
        return reject(stats, "not_object", side, at)
    t, reason = event_time(get(doc, p["time"]), p["unit"])
    if reason:
        return reject(stats, reason, side, at)
    stats["events"] += 1
    e = Event()
    e.t, e.doc = t, doc
    texts = [key_text(get(doc, f)) for f in p["group_by"]]
    e.text = "\0".join(texts)
    e.key = {f: json.loads(s) for f, s in zip(p["group_by"], texts)}
    return e


def reject(stats, reason, side, at):
    """Counts a rejected record and notes it in side (if not None) at (partition, offset)."""
    stats["rejected"][reason] = stats["rejected"].get(reason, 0) + 1
    if side is not None:
        side.append({"topic": "dlq", "partition": at[0], "offset": at[1], "reason": reason})
    return None


def note_late(side, at, e, wm):
    """Notes in side (if not None) a record refused as too late, with the watermark that
    refused it."""
    if side is not None:
        side.append({"topic": "late", "partition": at[0], "offset": at[1],
                     "event_time": rfc3339(e.t), "watermark": rfc3339(wm)})


class Window:
    def __init__(self, e, start, end):
        self.key, self.text, self.start, self.end = e.key, e.text, start, end
        self.docs = []
        self.revision = -1  # the last revision emitted
        self.emitted = False

    def absorb(self, o):
        self.docs += o.docs
        self.revision = max(self.revision, o.revision)

    def metrics(self, p):
        m = {}
        for name, agg, field, where, q in p["metrics"]:
            docs = [d for d in self.docs if where is None or holds(d, where)]
            if agg == "count":
                m[name] = len(docs)
                continue
            if agg == "ratio":
                of, over = field
                m[name] = m[of] / m[over] if m[over] else None
                continue
            if agg == "rate":
                m[name] = m[field[0]] / ((self.end - self.start) / 1000)
                continue
            vs = [as_float(v) for v in (get(d, field) for d in docs) if is_number(v)]
            vs = [v for v in vs if math.isfinite(v)]  # past float64's range: not a number
            if not vs:
                m[name] = None
            elif agg == "sum":
                s = float(sum(map(Fraction, vs)))
                m[name] = s if math.isfinite(s) else None
            elif agg == "avg":
                m[name] = float(sum(map(Fraction, vs)) / len(vs))
            elif agg == "min":
                m[name] = min(vs)
            elif agg == "max":
                m[name] = max(vs)
            elif agg == "percentile":
                # the rank of the decimal q as written, exactly (q * n in floats
                # is 7.000000000000001 for 0.07 * 100)
                m[name] = sorted(vs)[math.ceil(Fraction(repr(q)) * len(vs)) - 1]
        return m

    def line(self, name, p):
        return {"type": "window", "pipeline": name, "key": self.key,
                "window_start": rfc3339(self.start), "window_end": rfc3339(self.end),
                "revision": self.revision, "metrics": self.metrics(p)}


def starts(t, size, advance):
    """The starts of the tumbling or hopping windows [s, s+size) that hold t."""
    first = t - t % advance - size + advance
    return [s for s in range(first, t + 1, advance) if s <= t < s + size]


def add_to_windows(windows, e, args, late):
    """Adds event e to each tumbling or hopping window of its key that holds it and that
    late(window end) does not refuse, opening those it is the first of; returns them."""
    added = []
    for s in starts(e.t, args.size, args.advance):
        if late(s + args.size):
            continue
        w = windows.get((e.text, s))
        if w is None:
            w = windows[(e.text, s)] = Window(e, s, s + args.size)
        w.docs.append(e.doc)
        added.append(w)
    return added


class Alerts:
    def __init__(self, name, p):
        self.name, self.rules = name, p["alerts"]
        self.met = {}  # (key, rule) -> {window start: condition met}
        self.firing = {}

    def evaluate(self, w, m, out):
        for rule, metric, op, threshold, n, severity in self.rules:
            v = m[metric]
            verdicts = self.met.setdefault((w.text, rule), {})
            verdicts[w.start] = v is not None and OPS[op](v, threshold)
            last = [verdicts[s] for s in sorted(verdicts)[-n:]]
            firing = len(last) == n and all(last)
            if firing != self.firing.get((w.text, rule), False):
                self.firing[(w.text, rule)] = firing
                out.append({"type": "alert", "pipeline": self.name, "alert": rule, "severity": severity,
                            "state": "firing" if firing else "resolved", "key": w.key,
                            "window_start": rfc3339(w.start), "window_end": rfc3339(w.end),
                            "metric": metric, "value": v, "threshold": threshold})


def advance(wm, e, p):
    """The partition's watermark after event e: max event time seen - max_out_of_order."""
    return e.t - p["ooo"] if wm is None else max(wm, e.t - p["ooo"])


def too_late(wm, end, p):
    """Whether a window ending at end refuses events at watermark wm (None: none yet)."""
    return wm is not None and wm >= end + p["lateness"]


def order(w):
    return (w.end, w.start, w.text)


def new_stats(name):
    return {"type": "stats", "pipeline": name, "records": 0, "events": 0, "rejected": {}, "late_dropped": 0}


def one_partition(lines, name, p, args, side=None):
    """Every line run prints; with side, also what the pipeline's dead-letter and late
    topics hold (dlq: true, late_topic: true), by the record's partition (0) and offset."""
    stats = new_stats(name)
    out, alerts = [], Alerts(name, p)
    windows = {}  # (key text, start) -> Window; sessions: key text -> [Window]
    wm = None

    def emit(w):
        w.emitted, w.revision = True, w.revision + 1
        line = w.line(name, p)
        out.append(line)
        alerts.evaluate(w, line["metrics"], out)

    def late(end):
        return too_late(wm, end, p)

    def live():
        return [w for ws in windows.values() for w in ws] if args.window == "session" else list(windows.values())

    for offset, line in enumerate(lines):
        e = event(line, p, stats, side, (0, offset))
        if e is None:
            continue
        wm = advance(wm, e, p)
        accepted = False
        if args.window == "session":
            sessions = windows.setdefault(e.text, [])
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
                n = Window(e, start, end)
                for s in merged:
                    sessions.remove(s)
                    n.absorb(s)
                n.docs.append(e.doc)
                sessions.append(n)
        else:
            for w in add_to_windows(windows, e, args, late):
                accepted = True
                if w.emitted:
                    emit(w)
        if not accepted:
            stats["late_dropped"] += 1
            note_late(side, (0, offset), e, wm)
        for w in sorted((w for w in live() if not w.emitted and wm >= w.end), key=order):
            emit(w)
        if args.window == "session":
            for ws in windows.values():
                ws[:] = [w for w in ws if not late(w.end)]
        else:
            for k in [k for k, w in windows.items() if late(w.end)]:
                del windows[k]
    for w in sorted((w for w in live() if not w.emitted), key=order):
        emit(w)
    return out + [stats]


def record_value(line):
    """The record's value as the log holds it, from a line of `fastflow consume`:
    its fields come in SPEC's order and a JSON value is written as it is (decoding
    and encoding it again would turn 1e400 into Infinity), anything else as a string.
    A record that is a JSON string is written as a string too: taken for its text."""
    i = line.index('"key":') + len('"key":')
    if line.startswith("null", i):
        i += len("null")
    else:  # a string: to its closing quote
        i += 1
        while line[i] != '"':
            i += 2 if line[i] == "\\" else 1
        i += 1
    assert line.startswith(',"value":', i) and line.endswith("}"), line
    raw = line[i + len(',"value":'):-1]
    return json.loads(raw) if raw.startswith('"') else raw


def final(consumed, name, p, args, side=None):
    """Each window's final result; with side, also what the dead-letter and late topics
    hold, by the record's partition and offset."""
    if args.window == "session":
        sys.exit("reference.py: final takes tumbling or hopping windows")
    stats = new_stats(name)
    partitions = {}
    for line in consumed:
        r = json.loads(line)
        partitions.setdefault(r["partition"], []).append((r["offset"], record_value(line)))
    windows = {}
    for part in sorted(partitions):
        wm = None
        for offset, line in partitions[part]:
            e = event(line, p, stats, side, (part, offset))
            if e is None:
                continue
            wm = advance(wm, e, p)
            if not add_to_windows(windows, e, args, lambda end: too_late(wm, end, p)):
                stats["late_dropped"] += 1
                note_late(side, (part, offset), e, wm)
    out = []
    for w in sorted(windows.values(), key=order):
        w.revision = 0
        out.append(w.line(name, p))
    return out + [stats]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pipeline", choices=sorted(PIPELINES), default="api-health")
    ap.add_argument("--unit", choices=["ms", "s", "us", "ns", "rfc3339"], help="the time field's unit")
    ap.add_argument("--window", choices=["tumbling", "hopping", "session"], default="tumbling")
    ap.add_argument("--size", type=int, default=60000, help="window size, ms")
    ap.add_argument("--advance", type=int, help="hopping advance, ms (default: the size)")
    ap.add_argument("--gap", type=int, default=30000, help="session gap, ms")
    ap.add_argument("--side", metavar="FILE", help="also write there what the dead-letter and late topics hold")
    ap.add_argument("mode", choices=["one", "final"])
    ap.add_argument("file")
    args = ap.parse_args()
    args.advance = args.advance or args.size
    p = dict(PIPELINES[args.pipeline])
    if args.unit:
        p["unit"] = args.unit
    with open(args.file) as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    side = [] if args.side else None
    run = one_partition if args.mode == "one" else final
    out = run(lines, args.pipeline, p, args, side)
    for o in out:
        print(json.dumps(o, separators=(",", ":")))
    if side is not None:
        with open(args.side, "w") as f:
            for o in side:
                f.write(json.dumps(o, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
