"""Events for reference.py's every-agg pipeline (gen.py SEED N STEP every-agg UNIT).

Times at meta.t in UNIT, written in the forms a user's producer writes them
(fractions, exponents, zones), jittered within max_out_of_order (2s), late
within allowed_lateness (10s) and past it; values of v of every kind a field
holds (integers, decimals, negatives, zero, strings, booleans, null, missing,
past float64's range, malformed); group keys that are one key written
differently (1, 1.0, 1e0; "eu" and "e\\u0075") or missing; nested fields
under an object, an array or a string; names an object holds twice.
"""
import datetime
import json

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def time_text(rnd, ms, unit):
    """ms (an integer) as the JSON text of a time in unit, denoting ms or up to 1 ms more."""
    if unit == "ms":
        return rnd.choice([str(ms), str(ms), "%d.%d" % (ms, rnd.randint(0, 9)), "%.12e" % ms])
    if unit == "s":
        sub = rnd.randint(0, 9)
        return rnd.choice(["%d.%03d%d" % (ms // 1000, ms % 1000, sub), "%d.%03d" % (ms // 1000, ms % 1000),
                           "%d.%03de0" % (ms // 1000, ms % 1000)])
    if unit == "us":
        return str(ms * 1000 + rnd.randint(0, 999))
    if unit == "ns":
        return str(ms * 1000000 + rnd.randint(0, 999999))
    d = EPOCH + datetime.timedelta(milliseconds=ms)
    zone = rnd.choice(["Z", "Z", "+05:30", "-08:00", "+00:00"])
    if zone != "Z":
        h, m = int(zone[1:3]), int(zone[4:])
        off = datetime.timedelta(hours=h, minutes=m) * (1 if zone[0] == "+" else -1)
        d = d + off
    frac = rnd.choice(["", "%03d", "%03d000", "%03d123456"])
    body = d.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        body += "." + frac.replace("%03d", "%03d" % (ms % 1000))
    elif ms % 1000:
        body += ".%03d" % (ms % 1000)
    return json.dumps(body + zone)


def value_text(rnd):
    r = rnd.random()
    if r < 0.55:
        return "%.*f" % (rnd.choice([0, 1, 2, 3]), rnd.lognormvariate(3, 1.5))
    if r < 0.65:
        return str(rnd.randint(0, 500))
    if r < 0.70:
        return "-%.2f" % rnd.lognormvariate(2, 1)
    if r < 0.72:
        return rnd.choice(["0", "0.0", "-0.0"])
    if r < 0.74:
        return "%.3e" % rnd.lognormvariate(10, 3)
    if r < 0.77:
        return json.dumps(str(rnd.randint(1, 9)))
    if r < 0.79:
        return rnd.choice(["true", "false", "null"])
    if r < 0.80:
        return rnd.choice(["1e400", "-1e400"])
    if r < 0.805:
        return rnd.choice(["01", ".5", "1.", "NaN", "+1"])  # not JSON: the record is invalid
    return None  # missing


def jitter(rnd, t, ooo, late, too_late):
    """An event time for an event at t: 5% out of order within ooo (max_out_of_order),
    2% late up to late (allowed_lateness can take some), 1% up to too_late."""
    r = rnd.random()
    if r < 0.05:
        return t - rnd.randint(0, ooo)
    if r < 0.07:
        return t - rnd.randint(ooo, late)
    if r < 0.08:
        return t - rnd.randint(late, too_late)
    return t


def generate(rnd, n, step, base, unit):
    regions = ["eu", "us", "ap", "mx", "zz"]
    shards = ["1", "1.0", "1e0", "2", "2.5", "2.50", "3", "null", '"a"', None]
    # Objects and arrays, keyed by their text (written here as json.dumps writes
    # them, so that text and value agree), and ones a strict parser rejects, which
    # fastjson takes: NaN, 01, an unknown escape, a raw control character before
    # an escape (which fastjson's validator misses too).
    odd_shards = ['{"z":1}', '[1,"b"]', '{"z":NaN}', "[01]", '{"z":"\\q"}', '["\x17\\n"]']
    ids = ["9007199254740992", "9007199254740993", "9007199254740994", "-9007199254740993", "9007199254740993.0",
           "9.007199254740993e15", "18446744073709551617", "1" + "0" * 400, "12345"]
    t = base
    for _ in range(n):
        t += rnd.randint(0, step)
        ts = jitter(rnd, t, 2000, 12000, 60000)
        fields = []
        region = rnd.choice(regions)
        if rnd.random() < 0.03:
            region_text = '"e\\u0075"' if region == "eu" else json.dumps(region)
        else:
            region_text = json.dumps(region)
        if rnd.random() < 0.97:
            fields.append('"region":' + region_text)
        meta = rnd.random()
        if meta < 0.003:
            pass  # no meta: missing_time
        elif meta < 0.006:
            fields.append('"meta":{"t":null}')
        elif meta < 0.009:
            wrong = json.dumps(str(ts)) if unit != "rfc3339" else rnd.choice([str(ts), '"2026-11-22T10:00:00"', '"soon"'])
            fields.append('"meta":{"t":%s}' % wrong)
        elif meta < 0.011:
            fields.append('"meta":"%d"' % ts)  # meta not an object: missing_time
        else:
            fields.append('"meta":{"src":"x","t":%s}' % time_text(rnd, ts, unit))
        v = value_text(rnd)
        if v is not None:
            fields.append('"v":' + v)
            if rnd.random() < 0.02:
                fields.append('"v":' + (value_text(rnd) or "7"))  # twice: the last counts
        f = rnd.random()
        if f < 0.3:
            fields.append('"flag":true')
        elif f < 0.6:
            fields.append('"flag":false')
        elif f < 0.65:
            fields.append('"flag":"true"')
        n_ = rnd.random()
        if n_ < 0.3:
            fields.append('"note":null')
        elif n_ < 0.5:
            fields.append('"note":"x"')
        if rnd.random() < 0.5:
            # IDs past 2^53, where float64 no longer tells integers apart, in a where.
            fields.append('"id":' + rnd.choice(ids))
        h = rnd.random()
        shard = rnd.choice(shards) if rnd.random() > 0.04 else rnd.choice(odd_shards)
        host = []
        if shard is not None:
            host.append('"shard":' + shard)
        host.append('"load":%.2f' % rnd.random())
        host.append('"lat":%.3f' % rnd.lognormvariate(1, 1))
        if h < 0.9:
            fields.append('"host":{%s}' % ",".join(host))
        elif h < 0.95:
            fields.append('"host":[1,2]')
        elif h < 0.97:
            fields.append('"host":"h1"')
        rnd.shuffle(fields)
        line = "{" + ",".join(fields) + "}"
        b = rnd.random()
        if b < 0.003:
            line = line[:-2]
        elif b < 0.005:
            # Not an object. Not a JSON string: `fastflow consume` writes one as it
            # writes a record that is not JSON (SPEC: "or a string if the value is
            # not JSON"), so reference.py's final could not tell them apart.
            line = rnd.choice(["[]", "[{}]", "7", "-1.5", "null", "true"])
        print(line)
