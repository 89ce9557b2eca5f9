package pipeline

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

func TestDecimalMs(t *testing.T) {
	f := func(s string, shift int, want int64, ok bool) {
		t.Helper()
		got, gotOK := decimalMs([]byte(s), shift)
		if gotOK != ok || ok && got != want {
			t.Errorf("decimalMs(%q, %d) = %d, %v; want %d, %v", s, shift, got, gotOK, want, ok)
		}
	}
	f("1795341600123", 0, 1795341600123, true)
	f("1795341600.123", 3, 1795341600123, true) // float64 would say ...122.99
	f("1795341600.1239", 3, 1795341600123, true)
	f("1795341600123456", -3, 1795341600123, true)
	f("1795341600123456789", -6, 1795341600123, true)
	f("1.7953416001235e12", 0, 1795341600123, true)
	f("1795341600123.9", 0, 1795341600123, true)
	f("-1.5", 3, -1500, true)
	f("-0.0015", 3, -2, true) // floor
	f("0", 0, 0, true)
	f("1e30", 0, 0, false)
	f("", 0, 0, false)
	f("-", 0, 0, false)
	f("1e", 0, 0, false)
	f("12345678901234567890123", -6, 12345678901234567, true) // beyond 19 digits
	f("000123", 0, 0, false)                                  // not JSON
	f("0.5", 3, 500, true)
	f("0e3", 0, 0, true)
	f("999999999999999999", 0, 999999999999999999, true)
	f("12-3", 0, 0, false)
	// The integer fast path agrees with the general parse.
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 100000; n++ {
		b := make([]byte, 1+rng.IntN(18))
		for i := range b {
			b[i] = '0' + byte(rng.IntN(10))
		}
		if n%3 == 0 { // a non-digit anywhere: the general parse decides
			const odd = "/:.-eE+a \x00\xff"
			b[rng.IntN(len(b))] = odd[rng.IntN(len(odd))]
		}
		fast, ok1 := decimalMs(b, 0)
		slow, ok2 := decimalScaled(b, 0)
		if fast != slow || ok1 != ok2 {
			t.Fatalf("%s: fast path %d %v, general %d %v", b, fast, ok1, slow, ok2)
		}
	}
}

func TestParseRFC3339Ms(t *testing.T) {
	for _, s := range []string{
		"2026-11-22T10:20:00Z", "2026-11-22T10:20:00.5Z", "2026-11-22T10:20:00.123456789Z",
		"2026-11-22T10:20:00+01:00", "2026-11-22T10:20:00.25-05:30", "1969-12-31T23:59:59.999Z",
		"2024-02-29T00:00:00Z", "2000-01-01t00:00:00z", "1800-03-01T12:00:00Z",
	} {
		got, ok := parseRFC3339Ms([]byte(s))
		ref, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			ref, _ = time.Parse(time.RFC3339Nano, string([]byte{s[0], s[1], s[2], s[3]})+s[4:10]+"T"+s[11:len(s)-1]+"Z")
		}
		want := ref.UnixNano() / 1e6
		if ref.UnixNano() < 0 && ref.UnixNano()%1e6 != 0 {
			want--
		}
		if !ok || got != want {
			t.Errorf("%s: %d %v, want %d", s, got, ok, want)
		}
	}
	for _, s := range []string{"2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-22 10:20:00", "yesterday",
		"2026-11-22T25:00:00Z", "2026-11-22T10:20:00.Z", "2026-11-22T10:20:00+0100"} {
		if _, ok := parseRFC3339Ms([]byte(s)); ok {
			t.Errorf("%q accepted", s)
		}
	}
	// Against time.Parse on random instants.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		ts := time.UnixMilli(rng.Int64N(4e12) - 1e12).UTC()
		s := ts.Format("2006-01-02T15:04:05.000Z07:00")
		if got, ok := parseRFC3339Ms([]byte(s)); !ok || got != ts.UnixMilli() {
			t.Fatalf("%s: %d, want %d", s, got, ts.UnixMilli())
		}
	}
}

// TestParseNumber: the strict number parser takes exactly JSON's grammar
// and gives the float64 strconv.ParseFloat gives (the nearest), on the
// fast path and off it.
func TestParseNumber(t *testing.T) {
	f := func(s string) {
		t.Helper()
		got, ok := parseNumber([]byte(s))
		if ok != validNumber([]byte(s)) {
			t.Fatalf("%q: parseNumber ok %v, validNumber %v", s, ok, !ok)
		}
		if jsonOK := json.Valid([]byte(s)); jsonOK != ok {
			t.Fatalf("%q: parseNumber ok %v, encoding/json's grammar %v", s, ok, jsonOK)
		}
		if !ok {
			return
		}
		want, _ := strconv.ParseFloat(s, 64)
		if math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("%q: %v (%x); want %v (%x)", s, got, math.Float64bits(got), want, math.Float64bits(want))
		}
	}
	for _, s := range []string{"0", "-0", "1", "-1", "0.1", "123.4", "1e22", "1e23", "9007199254740993", "123456789012345",
		"1234567890123456", "0.000000000000000000000000001", "1.7976931348623157e308", "5e-324", "1e-400",
		"0.30000000000000004", "4.35", "2.5e-3", "1E+2", "100e-2", "-12.5e1", "1795341600000"} {
		f(s)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	const chars = "0123456789-+.eE"
	for n := 0; n < 200000; n++ {
		var b []byte
		if n%2 == 0 { // shaped like a number
			if rng.IntN(4) == 0 {
				b = append(b, '-')
			}
			b = strconv.AppendUint(b, rng.Uint64N(1<<uint(rng.IntN(64))), 10)
			if rng.IntN(2) == 0 {
				b = append(b, '.')
				b = strconv.AppendUint(b, rng.Uint64N(1<<uint(rng.IntN(40))), 10)
			}
			if rng.IntN(3) == 0 {
				b = append(b, "eE"[rng.IntN(2)])
				b = append(b, "+-"[rng.IntN(2)])
				b = strconv.AppendInt(b, rng.Int64N(40), 10)
			}
		} else {
			for range 1 + rng.IntN(8) {
				b = append(b, chars[rng.IntN(len(chars))])
			}
		}
		f(string(b))
	}
}
