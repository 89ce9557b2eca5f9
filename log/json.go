package log

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/fastflow/fastflow/log/jsontext"
)

// AppendJSON appends r as one line of JSON (without the newline), the form
// `fastflow consume` prints:
//
//	{"topic":"events","partition":3,"offset":41,"timestamp":1795341600123,"key":"payments","value":{...}}
//
// The value is embedded as JSON when it is valid JSON (UTF-8 included), as
// a JSON string otherwise, and null for a tombstone; the key is a string or null. With
// headers, a "headers" array of {"key","value"} objects follows.
func AppendJSON(dst []byte, topic string, r *Record, headers bool) []byte {
	dst = append(dst, `{"topic":`...)
	dst = AppendJSONString(dst, topic)
	dst = append(dst, `,"partition":`...)
	dst = strconv.AppendInt(dst, int64(r.Partition), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, r.Offset, 10)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, r.TimestampMs, 10)
	dst = append(dst, `,"key":`...)
	dst = appendNullable(dst, r.Key)
	dst = append(dst, `,"value":`...)
	dst = appendValue(dst, r.Value)
	if headers && len(r.Headers) > 0 {
		dst = append(dst, `,"headers":[`...)
		for i, h := range r.Headers {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"key":`...)
			dst = AppendJSONString(dst, string(h.Key))
			dst = append(dst, `,"value":`...)
			dst = appendNullable(dst, h.Value)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

func appendNullable(dst, b []byte) []byte {
	if b == nil {
		return append(dst, "null"...)
	}
	return AppendJSONString(dst, string(b))
}

func appendValue(dst, v []byte) []byte {
	if v == nil {
		return append(dst, "null"...)
	}
	t := bytes.Trim(v, " \t\r\n") // JSON's whitespace, not \v, \f or Unicode's spaces
	// JSON text is UTF-8 (RFC 8259), which fastjson does not check: a
	// value with other bytes embedded as it is would make the line invalid
	// JSON, so it is a string, its invalid bytes U+FFFD. So is a value
	// with a raw control character in a string, which fastjson's validator
	// can miss (jsontext.Validate).
	if len(t) == 0 || jsontext.Validate(t) != nil || !utf8.Valid(t) {
		return AppendJSONString(dst, string(v))
	}
	if bytes.IndexByte(t, '\n') < 0 && bytes.IndexByte(t, '\r') < 0 {
		return append(dst, t...)
	}
	// Keep one record per line.
	var c bytes.Buffer
	json.Compact(&c, t)
	return append(dst, c.Bytes()...)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD, as encoding/json does.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
