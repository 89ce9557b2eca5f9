package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/fastflow/fastflow/log"
)

func testPlan(t testing.TB, yaml string) *plan {
	t.Helper()
	f, err := Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	p, err := compile(f.Pipelines[0])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const extractYAML = `pipelines:
  - name: x
    source: {topic: events}
    time: {field: ts, unit: ms}
    group_by: [service, region]
    window: {type: tumbling, size: 1m}
    metrics:
      - {name: n, agg: count}
      - {name: errors, agg: count, where: 'status == "error"'}
      - {name: slow, agg: count, where: 'latency.ms >= 100'}
      - {name: ok, agg: count, where: 'ok == true'}
      - {name: avg, agg: avg, field: latency.ms}
`

func TestExtract(t *testing.T) {
	x := newExtractor(testPlan(t, extractYAML))
	f := func(value string, wantT int64, wantReason reason, wantOK bool, wantKey string, wantPreds uint64, wantHas uint64) {
		t.Helper()
		var v []byte
		if value != "<nil>" {
			v = []byte(value)
		}
		got, r, ok := x.extract(&log.Record{Value: v, TimestampMs: 7})
		if ok != wantOK || !ok && r != wantReason {
			t.Errorf("%s: ok %v reason %v; want %v %v", value, ok, r, wantOK, wantReason)
			return
		}
		if ok && (got != wantT || string(x.key) != wantKey || x.ev.Preds != wantPreds || x.ev.Has != wantHas) {
			t.Errorf("%s: t %d key %s preds %b has %b", value, got, x.key, x.ev.Preds, x.ev.Has)
		}
	}
	f(`{"ts":1000,"service":"pay","region":"eu","status":"error","latency":{"ms":150},"ok":true}`, 1000, 0, true, "\"pay\"\x00\"eu\"", 0b111, 1)
	f(`{"ts":1000,"service":"pay","status":"ok","latency":{"ms":"fast"}}`, 1000, 0, true, "\"pay\"\x00null", 0, 0)
	f(`{"ts":1000,"service":42,"region":null,"latency":{"ms":5}}`, 1000, 0, true, "42\x00null", 0, 1)
	f(`{"ts":1000,"service":"a\"b"}`, 1000, 0, true, "\"a\\\"b\"\x00null", 0, 0)
	f(`not json`, 0, reasonInvalidJSON, false, "", 0, 0)
	f(`<nil>`, 0, reasonInvalidJSON, false, "", 0, 0)
	f(``, 0, reasonInvalidJSON, false, "", 0, 0)
	f(`[1,2]`, 0, reasonNotObject, false, "", 0, 0)
	f(`"str"`, 0, reasonNotObject, false, "", 0, 0)
	f(`{"service":"pay"}`, 0, reasonMissingTime, false, "", 0, 0)
	f(`{"ts":null}`, 0, reasonMissingTime, false, "", 0, 0)
	f(`{"ts":"1000"}`, 0, reasonBadTime, false, "", 0, 0)
	f(`{"ts":true}`, 0, reasonBadTime, false, "", 0, 0)
	f(`{"ts":1e40}`, 0, reasonBadTime, false, "", 0, 0)
	// A number past float64's range compares as ±Inf in where, and is no
	// value for the aggregates (Has stays 0), like a string.
	f(`{"ts":1000,"service":"pay","latency":{"ms":1e400}}`, 1000, 0, true, "\"pay\"\x00null", 0b010, 0)
	f(`{"ts":1000,"service":"pay","latency":{"ms":-1e400}}`, 1000, 0, true, "\"pay\"\x00null", 0, 0)
	// A repeated name: its last value, as encoding/json, Python and
	// Jackson read it (README); fastjson's Get would give the first. With
	// a backslash in the record, names go through fastjson's Visit, which
	// decodes them: "t\u0073" is "ts".
	f(`{"ts":1000,"service":"pay","ts":2000,"service":"auth","region":"eu"}`, 2000, 0, true, "\"auth\"\x00\"eu\"", 0, 0)
	f(`{"ts":1000,"t\u0073":2000,"service":"pay","region":"e\u0075"}`, 2000, 0, true, "\"pay\"\x00\"e\\u0075\"", 0, 0)
	f(`{"t\u0073":1000,"ts":2000,"status":"ok","st\u0061tus":"error"}`, 2000, 0, true, "null\x00null", 0b1, 0)
	f(`{"ts":1000,"latency":{"ms":5,"ms":150},"latency":{"ms":50}}`, 1000, 0, true, "null\x00null", 0, 0b1)
	f(`{"ts":1000,"latency":{"ms":50},"latency":{"ms":5,"ms":150}}`, 1000, 0, true, "null\x00null", 0b10, 0b1)
	f(`{"ts":1000,"latency":{"ms":50,"m\u0073":150}}`, 1000, 0, true, "null\x00null", 0b10, 0b1)
	// ... but a value a later one shadows must be JSON, as a strict parser
	// holds it (a shadowed object whole, as jsontext.ValidValue checks one).
	f(`{"ts":1000,"latency":{"ms":01,"ms":150}}`, 0, reasonInvalidJSON, false, "", 0, 0)
	f(`{"ts":1000,"latency":{"ms":NaN,"m\u0073":150}}`, 0, reasonInvalidJSON, false, "", 0, 0)
	f(`{"ts":1000,"latency":{"ms":NaN},"latency":{"ms":150}}`, 0, reasonInvalidJSON, false, "", 0, 0)
	f(`{"ts":1000,"latency":{"ms":1},"latency":{"ms":150}}`, 1000, 0, true, "null\x00null", 0b10, 0b1)
	// A name repeated with a bad value after a good one: the bad one is
	// read, as a strict parser would.
	f(`{"ts":1000,"ts":"x"}`, 0, reasonBadTime, false, "", 0, 0)
	f(`{"ts":"x","ts":1000}`, 1000, 0, true, "null\x00null", 0, 0)
	// Past the years 0000-9999: out of range, as are int64's ends.
	f(`{"ts":253402300799999}`, 253402300799999, 0, true, "null\x00null", 0, 0)
	f(`{"ts":253402300800000}`, 0, reasonBadTime, false, "", 0, 0)
	f(`{"ts":-62167219200000}`, -62167219200000, 0, true, "null\x00null", 0, 0)
	f(`{"ts":-62167219200001}`, 0, reasonBadTime, false, "", 0, 0)
	f(`{"ts":9223372036854775807}`, 0, reasonBadTime, false, "", 0, 0)
	f(`{"ts":-9223372036854775808}`, 0, reasonBadTime, false, "", 0, 0)

	// Without time: the record timestamp; rfc3339 strings.
	noTime := testPlan(t, `pipelines:
  - {name: x, source: {topic: e}, window: {type: tumbling, size: 1m}, metrics: [{name: n, agg: count}]}
`)
	x2 := newExtractor(noTime)
	if got, _, ok := x2.extract(&log.Record{Value: []byte(`{}`), TimestampMs: 99}); !ok || got != 99 || string(x2.key) != "" {
		t.Fatalf("record timestamp: %d %v %q", got, ok, x2.key)
	}
	if _, r, ok := x2.extract(&log.Record{Value: []byte(`{}`), TimestampMs: math.MaxInt64}); ok || r != reasonBadTime {
		t.Fatalf("record timestamp past 9999: %v %v", ok, r)
	}
	rfc := testPlan(t, `pipelines:
  - {name: x, source: {topic: e}, time: {field: at, unit: rfc3339}, window: {type: tumbling, size: 1m}, metrics: [{name: n, agg: count}]}
`)
	x3 := newExtractor(rfc)
	if got, _, ok := x3.extract(&log.Record{Value: []byte(`{"at":"2026-11-22T10:20:00.5Z"}`)}); !ok || got != 1795342800500 {
		t.Fatalf("rfc3339: %d %v", got, ok)
	}
	if _, r, ok := x3.extract(&log.Record{Value: []byte(`{"at":1795342800500}`)}); ok || r != reasonBadTime {
		t.Fatal("a number for an rfc3339 field is bad_time")
	}
	if _, r, ok := x3.extract(&log.Record{Value: []byte(`{"at":"0000-01-01T00:00:00+01:00"}`)}); ok || r != reasonBadTime {
		t.Fatal("an rfc3339 time before the year 0000 is bad_time")
	}
}

func TestExtractAllocs(t *testing.T) {
	x := newExtractor(testPlan(t, extractYAML))
	recs := make([]log.Record, 64)
	for i := range recs {
		recs[i].Value = fmt.Appendf(nil, `{"ts":%d,"service":"svc-%d","region":"eu","status":"%s","latency":{"ms":%.1f},"ok":true}`,
			1795341600000+i, i%7, []string{"ok", "error"}[i%2], float64(i)*1.5)
	}
	i := 0
	if a := testing.AllocsPerRun(2000, func() {
		x.extract(&recs[i&63])
		i++
	}); a != 0 {
		t.Fatalf("extract allocates %v times per record", a)
	}
	// A record nested too deep for fastjson is invalid_json without
	// parsing it: fastjson's refusal wraps the error of each of 300 levels
	// in the next (~1.8 ms and 4.4 MB of garbage a record); one nested as
	// deep as it parses is an event.
	deep := &log.Record{Value: []byte(strings.Repeat("[", 301) + strings.Repeat("]", 301))}
	if a := testing.AllocsPerRun(100, func() {
		if _, r, ok := x.extract(deep); ok || r != reasonInvalidJSON {
			t.Fatalf("too deep: ok %v, reason %v", ok, r)
		}
	}); a != 0 {
		t.Fatalf("extract allocates %v times for a record nested too deep", a)
	}
	nested := fmt.Appendf(nil, `{"ts":1795341600000,"service":"a","x":%s1%s}`, strings.Repeat("[", 298), strings.Repeat("]", 298))
	if _, _, ok := x.extract(&log.Record{Value: nested}); !ok {
		t.Fatalf("a record nested 299 deep is not an event")
	}
}

// TestRawKeys: the extractor reads the names of fastjson's objects from
// their layout (rawObject). If an upgrade of fastjson changes it, this
// fails, rather than the extractor going quietly through Visit, slower.
func TestRawKeys(t *testing.T) {
	if !rawKeys || !rawValues {
		t.Fatalf("fastjson.Value is not laid out as rawObject (%v) and rawValue (%v) say: update them or drop them", rawKeys, rawValues)
	}
	type kvSwapped struct {
		v *fastjson.Value
		k string
	}
	for _, typ := range []reflect.Type{
		reflect.TypeFor[int](),
		reflect.TypeFor[struct{ a int }](),
		reflect.TypeFor[struct{ o struct{ kvs []kvSwapped } }](),
		reflect.TypeFor[struct {
			o struct{ kvs []struct{ k, v string } }
		}](),
		reflect.TypeFor[struct {
			t int
			o struct{ kvs []rawKV }
		}](),
	} {
		if rawLayoutMatches(typ) {
			t.Errorf("%v matches rawObject", typ)
		}
	}
	if !rawLayoutMatches(reflect.TypeFor[struct{ o struct{ kvs []rawKV } }]()) {
		t.Error("rawObject's own layout does not match")
	}
}

// FuzzExtract: arbitrary bytes never panic the extractor.
func FuzzExtract(f *testing.F) {
	f.Add([]byte(`{"ts":1000,"service":"pay","region":"eu","status":"error","latency":{"ms":150},"ok":true}`))
	f.Add([]byte(`{"ts":"2026-11-22T10:20:00Z"}`))
	f.Add([]byte(`{"ts":-1.5e-3}`))
	f.Add([]byte(`[{"a":`))
	f.Add([]byte(`{"ts":1,"service":{"a":[1.5,"b\n"]},"region":[true,null]}`))
	p := testPlan(f, extractYAML)
	x := newExtractor(p)
	rfc := *p
	rfc.unit = unitRFC3339
	xr := newExtractor(&rfc)
	secs := *p
	secs.unit = unitS
	xs := newExtractor(&secs)
	xv := newExtractor(p)
	xv.visit = true
	f.Add([]byte(`{"ts":1,"service":"a","ts":2,"latency":{"ms":1,"ms":2},"service":"b"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Names read from fastjson's objects directly (a record without a
		// backslash) or through its Visit: the same event.
		tm, r, ok := x.extract(&log.Record{Value: b})
		tmv, rv, okv := xv.extract(&log.Record{Value: b})
		if tm != tmv || r != rv || ok != okv || ok && (!bytes.Equal(x.key, xv.key) || x.ev.Preds != xv.ev.Preds ||
			x.ev.Has != xv.ev.Has || x.ev.Has&1 != 0 && x.ev.Values[0] != xv.ev.Values[0]) {
			t.Fatalf("%q: direct %d %v %v %q, through Visit %d %v %v %q", b, tm, r, ok, x.key, tmv, rv, okv, xv.key)
		}
		for _, e := range []*extractor{x, xr, xs} {
			tm, r, ok := e.extract(&log.Record{Value: b})
			if !ok && r >= numReasons {
				t.Fatalf("bad reason %d", r)
			} else if ok && e.p.unit == unitMs && tm == math.MinInt64 {
				t.Fatal("impossible time")
			}
			// The key cache's decoding of an event's group key text, on a
			// miss: each value comes out as JSON text in UTF-8, as result
			// lines print it, or the key is invalid.
			if k, valid := canonicalKey(e.key); ok && valid {
				for _, v := range strings.Split(k, "\x00") {
					if !json.Valid([]byte(v)) || !utf8.ValidString(v) {
						t.Fatalf("key value %q from %q is not JSON in UTF-8", v, e.key)
					}
				}
			}
		}
		decimalMs(b, 3)
		parseRFC3339Ms(b)
	})
}

// groupByYAML is a pipeline grouping by service.
const groupByYAML = `pipelines:
  - name: x
    source: {topic: e}
    time: {field: ts}
    group_by: [service]
    window: {type: tumbling, size: 1m}
    metrics:
      - {name: n, agg: count}
`

// groupKey extracts doc as w does and returns the key its group is
// interned as; ok is false if the key is invalid.
func groupKey(t *testing.T, w *worker, doc string) (key string, ok bool) {
	t.Helper()
	if _, _, ok := w.x.extract(&log.Record{Value: []byte(doc)}); !ok {
		t.Fatalf("%s: rejected", doc)
	}
	id := w.keys.id(w.x.key, 0)
	if id == invalidKey {
		return "", false
	}
	return w.keys.kt.key(id), true
}

// TestGroupKeyIsTheStringValue: a string group-by value is keyed by what
// it decodes to, not by its JSON text, whatever else read the field
// before (a predicate decodes it in place): "a\u0062" and "ab" are one
// group, written once, as valid JSON.
func TestGroupKeyIsTheStringValue(t *testing.T) {
	const withWhere = groupByYAML + `      - {name: lt, agg: count, where: 'service < "m"'}
`
	// Each group decodes to one string.
	groups := [][]string{
		{`"ab"`, `"a\u0062"`, `"\u0061\u0062"`},
		{`"a/b"`, `"a\/b"`},
		{`"tab\there"`, `"tab\u0009here"`},
		{`"q\"uote"`, `"q\u0022uote"`},
		{`"back\\slash"`, `"back\u005cslash"`},
		{`"é"`, `"\u00e9"`, `"\u00E9"`},
		{`"\u0001\u001f"`},
		{`"\u2028\u2029"`, "\"\u2028\u2029\""},
		{`"\ud83d\ude00"`, "\"\U0001F600\""},
		{"\"bad\xffutf8\"", `"bad\ufffdutf8"`},
		{`""`},
	}
	for _, yaml := range []string{groupByYAML, withWhere} {
		w := newWorker(testPlan(t, yaml), newKeyTable(), nil, nil, false)
		seen := map[string]string{}
		for _, g := range groups {
			var key string
			for _, text := range g {
				k, _ := groupKey(t, w, `{"ts":1,"service":`+text+`}`)
				gotKey := []byte(k)
				var want, got string
				if err := json.Unmarshal([]byte(g[0]), &want); err != nil {
					t.Fatal(err)
				}
				if !json.Valid(gotKey) || json.Unmarshal(gotKey, &got) != nil || got != want {
					t.Errorf("%s: key %q decodes to %q; want %q", text, gotKey, got, want)
				}
				if key == "" {
					key = string(gotKey)
				} else if string(gotKey) != key {
					t.Errorf("%s: key %q; %s gave %q", text, gotKey, g[0], key)
				}
				if !utf8.Valid(gotKey) {
					t.Errorf("%s: key %q is not UTF-8", text, gotKey)
				}
			}
			if other, dup := seen[key]; dup {
				t.Errorf("%s and %s share the key %q", g[0], other, key)
			}
			seen[key] = g[0]
		}
	}

	// Two values, the first with a NUL in it, where the key's values are
	// separated by NULs: escaped, and raw (fastjson takes it, a strict
	// parser does not: the key is invalid).
	w := newWorker(testPlan(t, strings.Replace(groupByYAML, "[service]", "[service, region]", 1)), newKeyTable(), nil, nil, false)
	var keys []string
	for _, doc := range []string{`{"ts":1,"service":"x\u0000y","region":"e\u0075"}`, "{\"ts\":1,\"service\":\"x\x00y\",\"region\":\"eu\"}"} {
		if k, ok := groupKey(t, w, doc); ok {
			keys = append(keys, k)
		}
	}
	if want := "\"x\\u0000y\"\x00\"eu\""; len(keys) != 1 || keys[0] != want {
		t.Errorf("keys %q; want %q, and the raw NUL's invalid", keys, want)
	}
}

// TestGroupKeyObjectsAndArrays: an object or an array group-by value is
// keyed by its text without spaces between tokens, and held to RFC 8259
// whole, as a strict parser would read the record: one with NaN, 01, an
// unknown escape or a raw control character in it (which fastjson takes)
// makes the record invalid_json, also when its time is missing or bad;
// invalid UTF-8 in a string becomes U+FFFD. Every key is JSON and UTF-8.
func TestGroupKeyObjectsAndArrays(t *testing.T) {
	w := newWorker(testPlan(t, groupByYAML), newKeyTable(), nil, nil, false)
	for _, c := range []struct{ value, key string }{
		{`{"a" : 1.0, "b":[ 2 ]}`, `{"a":1.0,"b":[2]}`},
		{`{"a":{"b":[true,null,"\u0000\n"]}}`, `{"a":{"b":[true,null,"\u0000\n"]}}`},
		{`[]`, `[]`},
		{"[\"bad\xff\"]", "[\"bad\uFFFD\"]"},
		{"{\"\xff\":1}", "{\"\uFFFD\":1}"},
		{`{"a":NaN}`, ""},
		{`[01]`, ""},
		{`["x\q"]`, ""},
		{"{\"a\":\"\x17\"}", ""},
		{"{\"a\":\"\x17\\n\"}", ""}, // before an escape: fastjson's validator misses it
		{"[\"\t\"]", ""},
	} {
		key, ok := groupKey(t, w, `{"ts":1,"service":`+c.value+`}`)
		switch {
		case c.key == "" && ok:
			t.Errorf("%q: key %q, want the record invalid", c.value, key)
		case c.key != "" && (!ok || key != c.key):
			t.Errorf("%q: key %q (valid %v), want %q", c.value, key, ok, c.key)
		case ok && (!json.Valid([]byte(key)) || !utf8.ValidString(key)):
			t.Errorf("%q: key %q is not JSON", c.value, key)
		}
		// A record without its time reads the key first: invalid_json,
		// not missing_time, where the key is not JSON.
		if _, r, _ := w.x.extract(&log.Record{Value: []byte(`{"service":` + c.value + `}`)}); r != reasonMissingTime {
			t.Fatalf("%q without a time: reason %v", c.value, r)
		}
		if validKey(w.x.key) != (c.key != "") {
			t.Errorf("%q without a time: validKey %v", c.value, validKey(w.x.key))
		}
	}
}

// TestWhereOnStrings: == and != on strings decide from the value's JSON
// text where it is enough (never decoding it) and decode it where not;
// either way the result is the decoded value's comparison, false for a
// missing field or another type. Literals with quotes and backslashes,
// escaped values, and values a predicate before decoded in place.
func TestWhereOnStrings(t *testing.T) {
	lits := []string{"error", "", `a"b`, `a\b`, "é", "ok"}
	ops := []string{"==", "!=", "<", ">="}
	var yaml strings.Builder
	yaml.WriteString("pipelines:\n  - name: x\n    source: {topic: e}\n    time: {field: ts}\n    window: {type: tumbling, size: 1m}\n    metrics:\n")
	type pred struct {
		op, lit string
	}
	var preds []pred
	for _, lit := range lits {
		for _, op := range ops {
			q, _ := json.Marshal(lit)
			fmt.Fprintf(&yaml, "      - {name: m%d, agg: count, where: '%s %s %s'}\n", len(preds), "status", op, q)
			preds = append(preds, pred{op, lit})
		}
	}
	x := newExtractor(testPlan(t, yaml.String()))
	values := []string{`"error"`, `"err\u006fr"`, `"\u0065rror"`, `"erro"`, `"errorx"`, `"ok"`, `""`, `"\u0000"`,
		`"a\"b"`, `"a\u0022b"`, `"a\\b"`, `"a\b"`, `"a\u005cb"`, `"ab"`, `"é"`, `"\u00e9"`, `"e"`,
		`5`, `true`, `null`, `{"a":"error"}`, `["error"]`, ``}
	for _, v := range values {
		doc := `{"ts":1}`
		if v != "" {
			doc = `{"ts":1,"status":` + v + `}`
		}
		if _, _, ok := x.extract(&log.Record{Value: []byte(doc)}); !ok {
			t.Fatalf("%s: rejected", doc)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		s, isString := m["status"].(string)
		for i, p := range preds {
			want := false
			if isString {
				c := strings.Compare(s, p.lit)
				want = map[string]bool{"==": c == 0, "!=": c != 0, "<": c < 0, ">=": c >= 0}[p.op]
			}
			if got := x.ev.Preds&(1<<uint(i)) != 0; got != want {
				t.Errorf("%s: status %s %q = %v; want %v", doc, p.op, p.lit, got, want)
			}
		}
	}
}

// TestStrictWhereRead: fastjson's parser takes more than JSON — NaN,
// Infinity, 01, .5, raw control characters and unknown escapes in strings.
// Where the pipeline reads a value (the time, a metric's field, a where
// field, a group-by value) it holds it to RFC 8259, and a record that a
// strict parser (encoding/json, Jackson) would reject is rejected as
// invalid_json, before a missing or bad time is looked at.
func TestStrictWhereRead(t *testing.T) {
	w, ps := testWorker(t, groupByYAML+`      - {name: slow, agg: count, where: 'limit > 3'}
      - {name: avg, agg: avg, field: rt}
`)
	f := func(doc string, want reason, wantOK bool) {
		t.Helper()
		before := ps.rejected
		events := ps.events
		w.process(ps, &log.Record{Value: []byte(doc)})
		gotOK := ps.events == events+1
		if gotOK != wantOK {
			t.Errorf("%s: accepted %v; want %v (rejected %v)", doc, gotOK, wantOK, ps.rejected)
			return
		}
		if !wantOK && ps.rejected[want] != before[want]+1 {
			t.Errorf("%s: rejected %v, before %v; want one more %v", doc, ps.rejected, before, want)
		}
	}
	for _, n := range []string{"0", "-0", "12", "-1.5", "0.25", "1e3", "1E+2", "2.5e-3", "1795341600000"} {
		f(`{"ts":1795341600000,"service":"a","rt":`+n+`,"limit":`+n+`}`, 0, true)
		f(`{"ts":`+n+`,"service":"a"}`, 0, true)
	}
	for _, n := range []string{"NaN", "nan", "Infinity", "-Infinity", "inf", "01", "-01", "00.5", ".5", "1.", "+1", "1e", "1e+", "0x10", "1795341600000.", "01795341600000"} {
		f(`{"ts":1795341600000,"service":"a","rt":`+n+`}`, reasonInvalidJSON, false)
		f(`{"ts":1795341600000,"service":"a","limit":`+n+`}`, reasonInvalidJSON, false)
		f(`{"ts":`+n+`,"service":"a"}`, reasonInvalidJSON, false)
		f(`{"service":`+n+`,"ts":1795341600000}`, reasonInvalidJSON, false)
		f(`{"service":"a","rt":`+n+`}`, reasonInvalidJSON, false) // not missing_time
	}
	for _, s := range []string{"\"a\tb\"", "\"a\x00\"", "\"\x1f\"", `"a\qb"`, `"a\qbcde"`, `"a\u12"`, `"a\u12G4"`, `"a\"`} {
		f(`{"ts":1795341600000,"service":`+s+`}`, reasonInvalidJSON, false)
		f(`{"ts":"soon","service":`+s+`}`, reasonInvalidJSON, false) // not bad_time
	}
	for _, s := range []string{`"a\tb"`, `"a\u0000"`, `"a\/b"`, `"\uD83D\uDE00"`, `"\ud800"`, "\"caf\xc3\xa9\""} {
		f(`{"ts":1795341600000,"service":`+s+`}`, 0, true)
	}
	// A name the pipeline reads, twice, the value the second shadows not
	// JSON: a strict parser rejects the record, though it would keep the
	// second value. With a backslash in the record, names go through
	// Visit. A name the pipeline does not read is not checked.
	for _, n := range []string{"01", "NaN", ".5", "+1", `"a\qb"`, "\"a\tb\""} {
		f(`{"ts":1795341600000,"service":"a","rt":`+n+`,"rt":2}`, reasonInvalidJSON, false)
		f(`{"ts":1795341600000,"service":"a","limit":`+n+`,"limit":2}`, reasonInvalidJSON, false)
		f(`{"ts":`+n+`,"ts":1795341600000,"service":"a"}`, reasonInvalidJSON, false)
		f(`{"ts":`+n+`,"ts":null,"service":"a"}`, reasonInvalidJSON, false)          // not missing_time
		f(`{"ts":"soon","service":"a","rt":`+n+`,"rt":2}`, reasonInvalidJSON, false) // not bad_time
		f(`{"ts":1795341600000,"service":`+n+`,"service":"a"}`, reasonInvalidJSON, false)
		f(`{"ts":1795341600000,"s\u0065rvice":`+n+`,"service":"a"}`, reasonInvalidJSON, false)
		f(`{"ts":1795341600000,"service":"a","x":`+n+`,"x":2}`, 0, true)
	}
	f(`{"ts":1795341600000,"service":"a","rt":1,"rt":2,"rt":"x"}`, 0, true)

	// What a strict parser takes but is no event stays what it was.
	f(`{"service":"a"}`, reasonMissingTime, false)
	f(`{"ts":"soon","service":"a"}`, reasonBadTime, false)
	f(`{"ts":1e400,"service":"a"}`, reasonBadTime, false)
}

// TestGroupKeyNumbers: a number group-by value is keyed by the number it
// denotes, written as encoding/json writes it — 1, 1.0 and 1e0 are one
// key — except that integers keep their digits (IDs past 2^53 stay
// apart).
func TestGroupKeyNumbers(t *testing.T) {
	w := newWorker(testPlan(t, strings.Replace(groupByYAML, "[service]", "[id]", 1)), newKeyTable(), nil, nil, false)
	key := func(text string) string {
		t.Helper()
		k, _ := groupKey(t, w, `{"ts":1,"id":`+text+`}`)
		return k
	}
	for _, g := range [][]string{
		{"1", "1.0", "1e0", "10e-1", "0.1E1"},
		{"2.5", "2.50", "25e-1"},
		{"0", "-0", "0.0", "-0.0", "0e5"},
		{"-3", "-3.000"},
		{"12345678901234567"},
		{"12345678901234568"},
		{"1e21", "1000000000000000000000.0"},
		{"1.5e-7", "0.00000015"},
		{"0.1", "1e-1"},
		{"1e400"},
	} {
		want := key(g[0])
		for _, text := range g[1:] {
			if got := key(text); got != want {
				t.Errorf("%s: key %s; %s gave %s", text, got, g[0], want)
			}
		}
	}
	if a, b := key("12345678901234567"), key("12345678901234568"); a == b {
		t.Errorf("two integers past 2^53 share the key %s", a)
	}
	// Non-integers are written as encoding/json writes the float64.
	rng := rand.New(rand.NewPCG(7, 8))
	for range 20000 {
		f := math.Float64frombits(rng.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		text := strconv.FormatFloat(f, 'e', -1, 64)
		want, _ := json.Marshal(f)
		if got := canonicalNumber([]byte(text)); string(got) != string(want) {
			t.Fatalf("%s: %s; encoding/json writes %s", text, got, want)
		}
	}
}

// TestWhereOnNumbers: a number compares with a number literal as the
// number it writes — an integer exactly, a number with a fraction or an
// exponent as its float64 (Python's json module and Jackson read them so)
// — also where float64 no longer tells integers apart: from 2^53 on
// (IDs, nanosecond times), 9007199254740993 is not 9007199254740992.
// Each value against each literal and operator, checked with math/big.
func TestWhereOnNumbers(t *testing.T) {
	lits := []string{"9007199254740992", "9007199254740993", "-9007199254740993", "9007199254740992.0",
		"9.007199254740993e15", "18446744073709551617", "1e20", "100000000000000000000",
		"1" + strings.Repeat("0", 308), "1e308", "100", "1e2", "0.3", "0", "-0"}
	ops := []string{"==", "!=", "<", "<=", ">", ">="}
	// A number's value as the comparison takes it; inf: ±1 for ±Inf.
	value := func(text string) (r *big.Rat, inf int) {
		if !strings.ContainsAny(text, ".eE") {
			r, _ = new(big.Rat).SetString(text)
			return r, 0
		}
		f, _ := strconv.ParseFloat(text, 64)
		if math.IsInf(f, 0) {
			return nil, int(math.Copysign(1, f))
		}
		return new(big.Rat).SetFloat64(f), 0
	}
	values := []string{"9007199254740992", "9007199254740993", "9007199254740994", "-9007199254740993",
		"9007199254740993.0", "9.007199254740993e15", "18446744073709551616", "18446744073709551617",
		"100000000000000000000", "100000000000000000001", "99999999999999999999", "1e400",
		"1" + strings.Repeat("0", 400), "1" + strings.Repeat("0", 399) + "1", "-1" + strings.Repeat("0", 400),
		"100", "100.0", "1e2", "0.3", "0.30000000000000001", "0", "-0", "-0.0"}
	for _, lit := range lits {
		yaml := "pipelines:\n  - name: x\n    source: {topic: e}\n    time: {field: ts}\n    window: {type: tumbling, size: 1m}\n    metrics:\n"
		for i, op := range ops {
			yaml += fmt.Sprintf("      - {name: m%d, agg: count, where: 'id %s %s'}\n", i, op, lit)
		}
		x := newExtractor(testPlan(t, yaml))
		lr, linf := value(lit)
		for _, v := range values {
			doc := `{"ts":1,"id":` + v + `}`
			if _, _, ok := x.extract(&log.Record{Value: []byte(doc)}); !ok {
				t.Fatalf("%s: rejected", doc)
			}
			vr, vinf := value(v)
			c := vinf - linf
			if vinf == 0 && linf == 0 {
				c = vr.Cmp(lr)
			}
			c = min(max(c, -1), 1)
			for i, op := range ops {
				want := map[string]bool{"==": c == 0, "!=": c != 0, "<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[op]
				if got := x.ev.Preds&(1<<uint(i)) != 0; got != want {
					t.Errorf("id %s %s %s = %v; want %v", v, op, lit, got, want)
				}
			}
		}
		// The exact comparison allocates nothing.
		rec := &log.Record{Value: []byte(`{"ts":1,"id":9007199254740993}`)}
		if n := testing.AllocsPerRun(100, func() { x.extract(rec) }); n != 0 {
			t.Errorf("id ... %s: %v allocations per event", lit, n)
		}
	}
}
