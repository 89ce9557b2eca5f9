package producer

import (
	"strings"

	"github.com/valyala/fastjson"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/jsontext"
)

// Fields extracts a key and a timestamp from JSON lines, as `fastflow
// produce --key-field F --timestamp-field T` and the HTTP ingest's
// ?key_field= do. A Fields cannot be used from concurrent goroutines; the
// key it returns is valid until the next call.
type Fields struct {
	// KeyField names the field whose value, as text, is the key: a string's
	// contents, a number's or a boolean's literal, an object's or array's
	// JSON. Empty: no key. A dotted name is a path into nested objects,
	// as a pipeline's fields are (lookup).
	KeyField string
	// TimeField names the field holding the record's timestamp: a number
	// of unix milliseconds or an RFC 3339 string (a path, as KeyField).
	// Empty: the time of production.
	TimeField string

	p        fastjson.Parser
	key, raw []byte
}

// Extract returns line's key (nil if the line is not a JSON object or
// lacks the field, or KeyField is empty) and timestamp (0, meaning now, in
// the same cases or when the field is not a timestamp; badTime reports
// that last case).
func (f *Fields) Extract(line []byte) (key []byte, tsMs int64, badTime bool) {
	if f.KeyField == "" && f.TimeField == "" {
		return nil, 0, false
	}
	if jsontext.TooDeep(line) { // not parsed: fastjson's refusal is slow
		return nil, 0, f.TimeField != ""
	}
	v, err := f.p.ParseBytes(line)
	if err != nil || v.Type() != fastjson.TypeObject {
		return nil, 0, f.TimeField != ""
	}
	var k, t *fastjson.Value
	if f.KeyField != "" {
		k = lookup(v, f.KeyField)
	}
	if f.TimeField != "" {
		t = lookup(v, f.TimeField)
	}
	// fastjson's parser takes more than JSON; the values read are held
	// to RFC 8259, as pipelines hold them: with one that is not, the line
	// is not JSON (unread values are not checked: that would cost a
	// second parse of every line).
	if k != nil && !f.strict(k) || t != nil && !f.strict(t) {
		return nil, 0, f.TimeField != ""
	}
	if k != nil {
		f.key = f.key[:0]
		switch k.Type() {
		case fastjson.TypeString:
			f.key = append(f.key, k.GetStringBytes()...)
			key = f.key
		case fastjson.TypeNull:
		default:
			f.key = k.MarshalTo(f.key)
			key = f.key
		}
	}
	if f.TimeField != "" {
		switch {
		case t == nil:
			badTime = true
		case t.Type() == fastjson.TypeNumber:
			tsMs = int64(t.GetFloat64())
		case t.Type() == fastjson.TypeString:
			if tm, err := log.ParseTime(t.GetStringBytes()); err == nil {
				tsMs = tm.UnixMilli()
			} else {
				badTime = true
			}
		default:
			badTime = true
		}
		if tsMs <= 0 {
			tsMs, badTime = 0, true
		}
	}
	return key, tsMs, badTime
}

// strict reports whether v's text is JSON by RFC 8259 (jsontext). A
// value's MarshalTo is the text it was parsed from while its strings are
// not decoded, which member leaves them.
func (f *Fields) strict(v *fastjson.Value) bool {
	f.raw = v.MarshalTo(f.raw[:0])
	return jsontext.ValidValue(f.raw)
}

// lookup returns the value at path in object v: its member named path if
// it has one, else, for a dotted path, each name's member in turn (an
// array's element by index), as pipelines read nested fields: host.name
// is {"host":{"name":...}}, and {"host.name":...} too.
func lookup(v *fastjson.Value, path string) *fastjson.Value {
	if m := member(v, path); m != nil || !strings.Contains(path, ".") {
		return m
	}
	for rest, more := path, true; more; {
		var name string
		name, rest, more = strings.Cut(rest, ".")
		switch v.Type() {
		case fastjson.TypeObject:
			v = member(v, name)
		case fastjson.TypeArray:
			v = v.Get(name)
		default:
			return nil
		}
		if v == nil {
			return nil
		}
	}
	return v
}

// member returns the value of name in object v: the last, if v holds it
// twice, as encoding/json, Python's json and Jackson read it, and as
// pipelines do (fastjson's Get would return the first).
func member(v *fastjson.Value, name string) *fastjson.Value {
	var last *fastjson.Value
	o, _ := v.Object()
	o.Visit(func(k []byte, v *fastjson.Value) {
		if string(k) == name {
			last = v
		}
	})
	return last
}
