package pipeline

// The text of group keys: what the extractor reads from an event (each
// group-by value's JSON text as written), checked against JSON's grammar
// and turned into the key that is interned, once per distinct text.

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/jsontext"
)

// canonicalKey turns a group key as the extractor writes it — each value's
// JSON text as the event wrote it, NUL-separated — into the key interned:
// strings by their decoded value (invalid UTF-8 as U+FFFD) written back
// by log.AppendJSONString, so that "a\u0062" and "ab" are one group;
// numbers by the number they denote (canonicalNumber); booleans, null,
// objects and arrays by their text (invalid UTF-8 in their strings as
// U+FFFD). Workers cache keys by the text, so this runs once per distinct
// text, never per event. ok is false if a value is not valid JSON
// (validKey).
func canonicalKey(b []byte) (key string, ok bool) {
	var out []byte
	var p fastjson.Parser
	for len(b) > 0 {
		n := valueLen(b)
		v := b[:n]
		if !jsontext.ValidValue(v) {
			return "", false
		}
		switch {
		case len(v) >= 2 && v[0] == '"' && !plainJSON(v[1:len(v)-1]):
			if s, err := p.ParseBytes(v); err == nil && s.Type() == fastjson.TypeString {
				v = log.AppendJSONString(nil, validUTF8(s.GetStringBytes()))
			}
		case len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9'):
			v = canonicalNumber(v)
		case (v[0] == '{' || v[0] == '[') && !utf8.Valid(v):
			v = []byte(validUTF8(v)) // only a string can hold such bytes
		}
		out = append(out, v...)
		if n < len(b) {
			out = append(out, 0) // the separator
			n++
		}
		b = b[n:]
	}
	return string(out), true
}

// validKey reports whether the group key text b (as canonicalKey takes it)
// holds only values a strict JSON parser takes: fastjson's parser also
// takes raw control characters and unknown escapes in strings, and
// numbers such as NaN or 01, in objects and arrays too
// (jsontext.ValidValue).
func validKey(b []byte) bool {
	for len(b) > 0 {
		n := valueLen(b)
		if !jsontext.ValidValue(b[:n]) {
			return false
		}
		b = b[min(n+1, len(b)):]
	}
	return true
}

// plainJSON reports whether b, the text of a JSON string, is its value as
// it is: printable ASCII without escapes.
func plainJSON(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// validUTF8 returns s with each byte that is not part of valid UTF-8
// replaced by U+FFFD, as encoding/json decodes a string.
func validUTF8(s []byte) string {
	if utf8.Valid(s) {
		return string(s)
	}
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		b.WriteRune(r) // RuneError for an invalid byte
		s = s[size:]
	}
	return b.String()
}

// canonicalNumber returns the group key form of valid JSON number text v:
// an integer as written (JSON has no leading zeros; -0 is 0), anything
// else as the float64 it denotes, written as encoding/json writes a
// float64 — so 1, 1.0 and 1e0 are one key, written 1, and 2.50 is 2.5.
// Integers are not read through float64, which would merge distinct ones
// past 2^53 (IDs).
func canonicalNumber(v []byte) []byte {
	if !bytes.ContainsAny(v, ".eE") {
		if string(v) == "-0" {
			return []byte("0")
		}
		return v
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsInf(f, 0) {
		return v // beyond float64: its text
	}
	if f == 0 {
		return []byte("0") // -0.0 too
	}
	b, _ := json.Marshal(f) // a finite float64: no error
	return b
}

// valueLen is the length of the JSON text at the start of b, up to the NUL
// that separates it from the next value of a key: a NUL inside a string
// (fastjson takes raw control characters in strings) is not one.
func valueLen(b []byte) int {
	inString, escaped := false, false
	for i, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case c == 0 && !inString:
			return i
		}
	}
	return len(b)
}
