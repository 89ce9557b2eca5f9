package jsontext

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

func TestValidValue(t *testing.T) {
	for _, v := range []string{`"a"`, `""`, `"a\"b\\c\/\b\f\n\r\t\u00e9\uD83D\uDE00"`, `0`, `-0`, `1.5e3`, `-12.25E-3`, `1e+9`,
		`true`, `false`, `null`, `{"a":[1,"b\n"]}`, `[]`, "\"\xff\""} {
		if !ValidValue([]byte(v)) {
			t.Errorf("%q: not valid", v)
		}
	}
	for _, v := range []string{``, `"`, `"a`, `"\0"`, `"\x41"`, "\"a\tb\"", `"\u12"`, `"\u12g4"`, `"a\"`, `""00"`, `01`, `-`, `+1`, `.5`, `1.`,
		`1e`, `1e+`, `NaN`, `Infinity`, `-Infinity`, `inf`, `0x10`, `1 `, ` 1`, `tru`, `nul`,
		`{"a":NaN}`, `[01]`, `["\q"]`, "{\"a\":\"\x17\\n\"}", `{"a":1,}`, `[1`} {
		if ValidValue([]byte(v)) {
			t.Errorf("%q: valid", v)
		}
	}
}

// FuzzValidValue: ValidValue says what encoding/json says (which, like
// ValidValue, does not ask for UTF-8) of a value without surrounding space.
func FuzzValidValue(f *testing.F) {
	for _, s := range []string{`"a\u0062"`, `-1.5e-3`, `01`, `"\0"`, `true`, "\"\x01\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if len(v) == 0 || len(bytes.TrimSpace(v)) != len(v) {
			return
		}
		if got, want := ValidValue(v), json.Valid(v); got != want {
			t.Fatalf("ValidValue(%q) = %v, encoding/json says %v", v, got, want)
		}
	})
}

func TestValidate(t *testing.T) {
	for _, v := range []string{`{"a":[1,-2.5e3,true,null,"\u00e9\n"]}`, ` [] `, "{\n \"a\": \"b\"\n}\n", `"\\"`, `""`} {
		if err := Validate([]byte(v)); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
	// fastjson v1.6.10's validator takes the first three: a raw control
	// character before a string's last escape.
	for _, v := range []string{"[{\"\":\"\x17\\b0000\"}]", "{\"a\":\"\x17\\n\"}", "\"\x01\\\\\"", "{\"\x01\\n\":1}", "\"\t\"",
		`{"a":NaN}`, `[01]`, `{"a":1,}`, `"\x"`, `[1] [2]`, ``} {
		if Validate([]byte(v)) == nil {
			t.Errorf("%q: valid", v)
		}
	}
}

// Deep nesting is judged in linear time, as encoding/json judges it:
// fastjson's validator took minutes over a million [ (each level wraps the
// error of the one inside), and a deeper text would overflow its stack.
func TestValidateDeep(t *testing.T) {
	deep := func(n int, tail string) []byte {
		return []byte(strings.Repeat("[", n) + tail + strings.Repeat("]", n))
	}
	for _, c := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"a million [", bytes.Repeat([]byte("["), 1<<20), false},
		{"a million {\"a\":", bytes.Repeat([]byte(`{"a":`), 1<<20), false},
		{"300 levels", deep(300, "1"), true},
		{"301 levels", deep(301, "1"), true},
		{"9,999 levels", deep(9999, `{"a":"b"}`), true},
		{"9,999 levels, NaN", deep(9999, "NaN"), false},
		{"9,999 levels, a raw control character", deep(9999, "\"\x17\\n\""), false},
		{"20,000 levels", deep(20000, "1"), false}, // past encoding/json's limit
		{"many flat", []byte("[" + strings.Repeat("[1],", 1000) + "[]]"), true},
		{"[ in strings", []byte(`["` + strings.Repeat("[{", 1000) + `"]`), true},
	} {
		if err := Validate(c.b); (err == nil) != c.ok || (err == nil) != json.Valid(c.b) {
			t.Errorf("%s: %v, encoding/json says valid: %v", c.name, err, json.Valid(c.b))
		}
	}
}

// FuzzValidate: Validate says what encoding/json says.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{`{"a":[1,"b\n"]}`, "[{\"\":\"\x17\\b0000\"}]", `01`, `{"a":1,}`, " \"\\u00e9\" "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if err, want := Validate(b), json.Valid(b); (err == nil) != want {
			t.Fatalf("Validate(%q) = %v, encoding/json says valid: %v", b, err, want)
		}
	})
}

// BenchmarkValidate is the cost of Validate against fastjson's validator
// alone, on an event without an escape and one with.
func BenchmarkValidate(b *testing.B) {
	for _, c := range []struct{ name, ev string }{
		{"plain", `{"ts":1795341600123,"service":"payments","status":"error","response_time":211.4,"region":"eu-west-1"}`},
		{"escaped", `{"ts":1795341600123,"service":"payments","status":"error","response_time":211.4,"msg":"timeout\nretrying"}`},
	} {
		ev := []byte(c.ev)
		b.Run(c.name+"/fastjson", func(b *testing.B) {
			b.SetBytes(int64(len(ev)))
			for b.Loop() {
				if fastjson.ValidateBytes(ev) != nil {
					b.Fatal("invalid")
				}
			}
		})
		b.Run(c.name+"/Validate", func(b *testing.B) {
			b.SetBytes(int64(len(ev)))
			for b.Loop() {
				if Validate(ev) != nil {
					b.Fatal("invalid")
				}
			}
		})
	}
}

// hasControl finds a byte below 0x20 wherever it is among eight, whatever
// the bytes around it.
func TestHasControl(t *testing.T) {
	for n := 0; n <= 20; n++ {
		for _, fill := range []byte{0x20, 0x7f, 0x80, 0xff, '"', '\\'} {
			b := bytes.Repeat([]byte{fill}, n)
			if hasControl(b) {
				t.Fatalf("%q: a control character found", b)
			}
			for i := range n {
				for _, c := range []byte{0, 0x01, 0x0a, 0x1f} {
					b[i] = c
					if !hasControl(b) {
						t.Fatalf("%q: no control character found", b)
					}
				}
				b[i] = fill
			}
		}
	}
}

// TooDeep says whether more than MaxDepth arrays and objects are open at
// once, whatever the strings hold; where it says no, fastjson's parser
// never refuses the text for its depth.
func TestTooDeep(t *testing.T) {
	nest := func(n int, open, close, inner string) []byte {
		return []byte(strings.Repeat(open, n) + inner + strings.Repeat(close, n))
	}
	for _, c := range []struct {
		name string
		b    []byte
		deep bool
	}{
		{"short", []byte(`[[[1]]]`), false},
		{"299 arrays", nest(MaxDepth, "[", "]", "1"), false},
		{"300 arrays", nest(MaxDepth+1, "[", "]", "1"), true},
		{"299 objects", nest(MaxDepth, `{"a":`, "}", "1"), false},
		{"300 objects", nest(MaxDepth+1, `{"a":`, "}", "1"), true},
		{"a million [", bytes.Repeat([]byte("["), 1<<20), true},
		{"[ in a string", []byte(`["` + strings.Repeat("[{", 1000) + `"]`), false},
		{"escaped quotes", []byte(`["\"` + strings.Repeat("[", 1000) + `\\"]`), false},
		{"after an escaped quote's string", []byte(`["\\"` + strings.Repeat(",[", 400) + strings.Repeat("]", 400) + "]"), true},
		{"many flat", []byte("[" + strings.Repeat("[1],", 1000) + "[]]"), false},
	} {
		if got := TooDeep(c.b); got != c.deep {
			t.Errorf("%s: TooDeep %v, want %v", c.name, got, c.deep)
		}
		var p fastjson.Parser
		if _, err := p.ParseBytes(c.b); !c.deep && err != nil && strings.Contains(err.Error(), "depth") {
			t.Errorf("%s: not too deep, and fastjson refuses it: %v", c.name, err)
		} else if c.deep && err == nil {
			t.Errorf("%s: too deep, and fastjson takes it", c.name)
		}
	}
}

// BenchmarkTooDeep is what the check costs an event longer than MaxDepth
// bytes, before its parse (fastjson: ~1 ns a byte).
func BenchmarkTooDeep(b *testing.B) {
	ev := []byte(`{"ts":1795341600123,"service":"payments","status":"error","response_time":211.4,"tags":["a","b"],"user":{"id":42,"plan":"pro"},"msg":"` + strings.Repeat("x", 400) + `"}`)
	b.SetBytes(int64(len(ev)))
	for b.Loop() {
		if TooDeep(ev) {
			b.Fatal("deep")
		}
	}
}
