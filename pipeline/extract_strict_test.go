package pipeline

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"testing"

	"github.com/fastflow/fastflow/log"
)

// FuzzExtractMatchesStrictParser holds the extractor to a strict parser's
// reading of the same record: for any record that encoding/json takes as
// one JSON value, the extractor's verdict (not_object, missing_time,
// bad_time, or an event: never invalid_json), its event time (the ms
// field floored exactly, within the years 0000-9999), its where
// predicates and its numeric field are what encoding/json's decoding
// gives — duplicate names by their last value, escaped names decoded.
func FuzzExtractMatchesStrictParser(f *testing.F) {
	for _, s := range []string{
		`{"ts":1000,"service":"pay","status":"error","latency":{"ms":150},"ok":true}`,
		`{"ts":1795341600123.999,"status":"err\u006fr","l\u0061tency":{"ms":1e2}}`,
		`{"ts":-0.5,"latency":{"ms":99.99999999999999999},"ok":false}`,
		`{"ts":1,"ts":2,"latency":{"ms":1,"ms":200},"latency":{"ms":3}}`,
		`{"ts":"1000"}`, `{"ts":null}`, `{}`, `[1]`, `"x"`, `{"ts":1e400,"latency":{"ms":-1e400}}`,
		`{"ts":253402300799999.9}`, `{"ts":253402300800000}`, `{"ts":-62167219200000.5}`,
		`{"ts":12,"status":"error\ud800","ok":"true","latency":{"ms":"150"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"ts":1,"id":9007199254740993}`))
	f.Add([]byte(`{"ts":1,"id":9007199254740993.0,"id":-18446744073709551617}`))
	// extractYAML's where predicates, and one where float64s no longer tell
	// integers apart.
	x := newExtractor(testPlan(f, extractYAML+"      - {name: ids, agg: count, where: 'id > 9007199254740992'}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		if d.Decode(&v) != nil || v == nil {
			return
		}
		tm, r, ok := x.extract(&log.Record{Value: b})
		obj, isObj := v.(map[string]any)
		wantT, wantR, wantOK := int64(0), reason(0), false
		switch ts := obj["ts"].(type) {
		case nil:
			wantR = reasonMissingTime
		case json.Number:
			wantT, wantOK = floorMs(string(ts))
			if !wantOK {
				wantR = reasonBadTime
			}
		default:
			wantR = reasonBadTime
		}
		if !isObj {
			wantR = reasonNotObject
		}
		if ok != wantOK || !ok && r != wantR || ok && tm != wantT {
			t.Fatalf("%q: extract %d %v %v; a strict parser: %d %v %v", b, tm, r, ok, wantT, wantR, wantOK)
		}
		if !ok {
			return
		}
		var preds, has uint64
		if s, ok := obj["status"].(string); ok && s == "error" {
			preds |= 1 << 0
		}
		lat, _ := obj["latency"].(map[string]any)
		ms, isNum := lat["ms"].(json.Number)
		var msv float64
		if isNum {
			msv, _ = strconv.ParseFloat(string(ms), 64) // ±Inf past float64's range
			if msv >= 100 {
				preds |= 1 << 1
			}
			if !math.IsInf(msv, 0) {
				has |= 1
			}
		}
		if o, ok := obj["ok"].(bool); ok && o {
			preds |= 1 << 2
		}
		if id, ok := obj["id"].(json.Number); ok {
			// An integer exactly, a number with a fraction or an exponent as
			// its float64 (±Inf past its range).
			above := false
			if n, isInt := new(big.Int).SetString(string(id), 10); isInt {
				above = n.Cmp(big.NewInt(1<<53)) > 0
			} else {
				f, _ := strconv.ParseFloat(string(id), 64)
				above = f > 1<<53
			}
			if above {
				preds |= 1 << 3
			}
		}
		if x.ev.Preds != preds || x.ev.Has != has || has&1 != 0 && x.ev.Values[0] != msv {
			t.Fatalf("%q: preds %b has %b value %v; a strict parser: %b %b %v", b, x.ev.Preds, x.ev.Has, x.ev.Values[0], preds, has, msv)
		}
	})
}

// floorMs is a JSON number's value floored to an integer, if it lies in
// the event times a pipeline takes.
func floorMs(n string) (int64, bool) {
	r, ok := new(big.Rat).SetString(n)
	if !ok {
		return 0, false
	}
	q := new(big.Int).Div(r.Num(), r.Denom()) // Euclidean: floors, the denominator being positive
	if !q.IsInt64() || q.Int64() < minEventMs || q.Int64() > maxEventMs {
		return 0, false
	}
	return q.Int64(), true
}
