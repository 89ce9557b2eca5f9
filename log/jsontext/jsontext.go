// Package jsontext holds the values fastflow reads out of JSON to RFC
// 8259. fastjson, the parser on every hot path, takes more than JSON: raw
// control characters and unknown escapes in strings, and numbers such as
// NaN, Infinity, 01, .5 and 1. A strict parser (encoding/json, Jackson,
// Python's json) rejects a record holding them, so fastflow checks the
// text of each value it reads — a pipeline's group keys, produce's and
// ingest's key and timestamp fields, objects and arrays among them whole —
// and judges the record as a strict parser would, without validating the
// values it does not read (that would cost a second parse of every
// record). Where fastflow embeds a whole record in its output as JSON
// (consume's lines, the dead-letter and late topics) or splits one into
// records (ingest's arrays), Validate checks all of it: fastjson's
// validator, with what it misses. TooDeep spares fastjson's parser the
// texts it would refuse slowly.
package jsontext

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"

	"github.com/valyala/fastjson"
)

// Validate returns an error unless b is one JSON text by RFC 8259 (UTF-8
// aside, which encoding/json does not ask for either): fastjson's
// validator, which checks numbers, escapes and structure as strictly as
// encoding/json, and a scan for the raw control characters it misses — in
// v1.6.10 it looks for them only after a string's last escape, so
// "\x17\n" passes it.
func Validate(b []byte) error {
	// fastjson's validator recurses once per level of nesting, and on an
	// error wraps the error of each level in the next: a record of a
	// million [ took it minutes (quadratic), and deeper would overflow the
	// stack. A text nested deeper than its parser goes (TooDeep) goes to
	// encoding/json's scanner, which is linear and as strict (to 10,000
	// levels).
	if TooDeep(b) {
		if !json.Valid(b) {
			return errNotJSON
		}
		return nil
	}
	if err := fastjson.ValidateBytes(b); err != nil {
		return err
	}
	// It misses them only in a string with an escape; most texts with an
	// escape have no control character at all, even outside strings.
	if bytes.IndexByte(b, '\\') >= 0 && hasControl(b) && !noRawControl(b) {
		return errRawControl
	}
	return nil
}

// hasControl reports whether b holds a byte below 0x20, eight bytes at a
// time: (x - 0x20 in each byte) &^ x has a byte's top bit set for a byte
// below 0x20 (a borrow can set one only above such a byte).
func hasControl(b []byte) bool {
	for ; len(b) >= 8; b = b[8:] {
		x := binary.LittleEndian.Uint64(b)
		if (x-0x2020202020202020)&^x&0x8080808080808080 != 0 {
			return true
		}
	}
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

var (
	errRawControl = errors.New("a string holds a raw control character (U+0000 to U+001F)")
	errNotJSON    = errors.New("not JSON (RFC 8259), or nested deeper than 10,000 levels")
)

// MaxDepth is how deep TooDeep lets a text nest: fewer containers open at
// once than fastjson's parser takes (it refuses a value inside 300).
const MaxDepth = fastjson.MaxDepth - 1

// TooDeep reports whether b may nest deeper than fastjson's parser goes:
// more than MaxDepth arrays and objects open at once. Such a text is not
// worth parsing: fastjson refuses it only after wrapping the error of
// each level in the next, ~1.8 ms and 4.4 MB of garbage for one record
// of 301 [ (an event parses in ~85 ns), which a producer's bad records
// would pay per record. A text with at most MaxDepth [ and { is answered
// by two counts; a longer one by a scan of its nesting, strings skipped;
// one of at most MaxDepth bytes by its length alone (TooDeep inlines, so
// the events of most pipelines cost a comparison).
func TooDeep(b []byte) bool {
	return len(b) > MaxDepth && nestsTooDeep(b)
}

func nestsTooDeep(b []byte) bool {
	if bytes.Count(b, []byte{'['})+bytes.Count(b, []byte{'{'}) <= MaxDepth {
		return false
	}
	open, in := 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case in:
			switch c {
			case '\\':
				i++
			case '"':
				in = false
			}
		case c == '"':
			in = true
		case c == '[' || c == '{':
			if open++; open > MaxDepth {
				return true
			}
		case c == ']' || c == '}':
			open--
		}
	}
	return false
}

// noRawControl reports whether no string of b, a JSON text otherwise
// valid, holds a raw control character (U+0000 to U+001F).
func noRawControl(b []byte) bool {
	in := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case !in:
			in = c == '"'
		case c == '\\':
			i++ // the escaped byte: valid, and not the string's end
		case c == '"':
			in = false
		case c < 0x20:
			return false
		}
	}
	return true
}

// ValidValue reports whether v, the text of one JSON value as fastjson
// holds it before decoding it (its MarshalTo while its strings are not
// decoded), is JSON: a string's escapes and characters, a number's
// grammar, true, false or null, and an object or an array whole
// (Validate: a value read is rarely one, and then usually small).
func ValidValue(v []byte) bool {
	switch {
	case len(v) == 0:
		return false
	case v[0] == '"':
		return len(v) >= 2 && v[len(v)-1] == '"' && ValidString(v[1:len(v)-1])
	case v[0] == '{' || v[0] == '[':
		return Validate(v) == nil
	case string(v) == "true" || string(v) == "false" || string(v) == "null":
		return true
	}
	return ValidNumber(v)
}

// ValidString reports whether s, the text between a JSON string's
// quotes, has no raw control character or quote and only JSON's escapes.
func ValidString(s []byte) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == '"':
			return false
		case c == '\\':
			i++
			if i == len(s) {
				return false
			}
			switch s[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s) {
					return false
				}
				for _, h := range s[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h|0x20 >= 'a' && h|0x20 <= 'f') {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		}
	}
	return true
}

// ValidNumber reports whether s is a JSON number:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func ValidNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = digits(s, i)
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		j := digits(s, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(s) && s[i]|0x20 == 'e' {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := digits(s, i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(s)
}

// digits returns the index of the first byte at or after i of s that is
// not a decimal digit.
func digits(s []byte, i int) int {
	for i < len(s) && s[i]-'0' <= 9 {
		i++
	}
	return i
}
