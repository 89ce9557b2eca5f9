package log

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendJSON(t *testing.T) {
	f := func(r Record, headers bool, want string) {
		t.Helper()
		got := string(AppendJSON(nil, "events", &r, headers))
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
		var v any
		if err := json.Unmarshal([]byte(got), &v); err != nil || !utf8.ValidString(got) {
			t.Errorf("not JSON (UTF-8): %q: %v", got, err)
		}
	}
	f(Record{Partition: 3, Offset: 41, TimestampMs: 1795341600123, Key: []byte("payments"), Value: []byte(`{"a":1}`)}, false,
		`{"topic":"events","partition":3,"offset":41,"timestamp":1795341600123,"key":"payments","value":{"a":1}}`)
	f(Record{Value: []byte("not json")}, false,
		`{"topic":"events","partition":0,"offset":0,"timestamp":0,"key":null,"value":"not json"}`)
	f(Record{Key: []byte("k"), Value: nil}, false,
		`{"topic":"events","partition":0,"offset":0,"timestamp":0,"key":"k","value":null}`)
	f(Record{Value: []byte("{\n  \"a\": [1, 2]\n}\n")}, false,
		`{"topic":"events","partition":0,"offset":0,"timestamp":0,"key":null,"value":{"a":[1,2]}}`)
	f(Record{Key: []byte("q\"\\\x01\xff"), Value: []byte("42")}, false,
		`{"topic":"events","partition":0,"offset":0,"timestamp":0,"key":"q\"\\\u0001\ufffd","value":42}`)
	// A JSON value with bytes that are not UTF-8 is not JSON text: a string.
	f(Record{Value: []byte("{\"a\":\"x\xffy\"}")}, false,
		`{"topic":"events","partition":0,"offset":0,"timestamp":0,"key":null,"value":"{\"a\":\"x\ufffdy\"}"}`)
	// Nor is one with a raw control character in a string, which
	// fastjson's validator misses before an escape.
	f(Record{Value: []byte("{\"a\":\"\x17\\n\"}")}, false,
		`{"topic":"events","partition":0,"offset":0,"timestamp":0,"key":null,"value":"{\"a\":\"\u0017\\n\"}"}`)
	// A million [ is not JSON, found in linear time (fastjson's validator
	// alone took minutes); JSON nested 5,000 deep is embedded.
	deep := strings.Repeat("[", 1<<20)
	f(Record{Value: []byte(deep)}, false,
		`{"topic":"events","partition":0,"offset":0,"timestamp":0,"key":null,"value":"`+deep+`"}`)
	deep = strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	f(Record{Value: []byte(deep)}, false,
		`{"topic":"events","partition":0,"offset":0,"timestamp":0,"key":null,"value":`+deep+`}`)
	f(Record{Value: []byte(""), Headers: []Header{{Key: []byte("h"), Value: []byte("v")}, {Key: []byte("n")}}}, true,
		`{"topic":"events","partition":0,"offset":0,"timestamp":0,"key":null,"value":"","headers":[{"key":"h","value":"v"},{"key":"n","value":null}]}`)
}

// FuzzAppendJSON: whatever a record holds, consume's line is one line of
// valid JSON (as encoding/json reads it) whose value is the record's value
// when that is JSON text, and the value as a string otherwise.
func FuzzAppendJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, "not json", "{\n \"a\": [1, 2]\n}\n", "NaN", "01", `"\x"`, "\v{}", "{\"a\":\"x\xffy\"}", "1e400", `"\ud800"`, "{\"a\":\"\x17\\n\"}"} {
		f.Add([]byte(s), []byte("k"))
	}
	f.Fuzz(func(t *testing.T, value, key []byte) {
		line := AppendJSON(nil, "t", &Record{Key: key, Value: value}, false)
		if bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("not one line: %q", line)
		}
		var got struct {
			Key   string
			Value json.RawMessage
		}
		if err := json.Unmarshal(line, &got); err != nil || !utf8.Valid(line) {
			t.Fatalf("not JSON (UTF-8): %q: %v", line, err)
		}
		if json.Valid(value) && utf8.Valid(value) { // RFC 8259: JSON text is UTF-8
			var a, b bytes.Buffer
			json.Compact(&a, value)
			json.Compact(&b, got.Value)
			if a.String() != b.String() {
				t.Fatalf("value %q printed as %s", value, got.Value)
			}
			return
		}
		var want []rune // invalid bytes become U+FFFD each
		for b := value; len(b) > 0; {
			r, n := utf8.DecodeRune(b)
			want, b = append(want, r), b[n:]
		}
		var s string
		if err := json.Unmarshal(got.Value, &s); err != nil || s != string(want) {
			t.Fatalf("value %q, not JSON, printed as %s", value, got.Value)
		}
	})
}
