package pipeline

import (
	"bytes"
	"math"
	"reflect"
	"unsafe"

	"github.com/valyala/fastjson"
	"golang.org/x/sys/cpu"

	"github.com/fastflow/fastflow/agg"
	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/jsontext"
)

// reason is why a record was rejected.
type reason uint8

const (
	reasonInvalidJSON reason = iota // not JSON (a null value too)
	reasonNotObject                 // JSON, but not an object
	reasonMissingTime               // the time field is absent or null
	reasonBadTime                   // the time field has the wrong type or format, or is out of range
	numReasons
)

var reasonNames = [numReasons]string{"invalid_json", "not_object", "missing_time", "bad_time"}

// RejectReasons names the reasons a record is rejected, indexed as
// Stats.Rejected.
var RejectReasons = reasonNames[:]

func (r reason) String() string { return reasonNames[r] }

// extractor turns a record into an event: its time, the predicates that
// hold, its numeric fields and its group key. One per worker: it owns a
// fastjson.Parser, and what it returns is valid until the next call.
type extractor struct {
	_         cpu.CacheLinePad // written per event: no line shared with another worker's data
	p         *plan
	parser    fastjson.Parser
	top       []*fastjson.Value // the record's values of plan.top, by index; nil: absent
	plain     bool              // the record's names are as written (readTop)
	shadowBad bool              // a value a repeated name the pipeline reads shadows is not JSON (shadow)
	visit     bool              // tests: read names through fastjson's Visit and texts through MarshalTo, always
	ev        agg.Event
	key       []byte // the group-by values' JSON text as written, NUL-separated (keyCache decodes it)
	num       []byte // scratch for a number's text
	_         cpu.CacheLinePad
}

// cacheLine is the CPU's cache line size. What a worker writes per event
// is kept off the lines of another worker's data (cpu.CacheLinePad around
// it, scratch buffers of a line at least): objects allocated together sit
// side by side, and a line written by two cores goes back and forth
// between them.
const cacheLine = int(unsafe.Sizeof(cpu.CacheLinePad{}))

func newExtractor(p *plan) *extractor {
	// The scratch buffers are written per event: at least a cache line
	// each, so that no two workers' share one.
	return &extractor{p: p, ev: agg.Event{Values: make([]float64, len(p.fields), max(len(p.fields), cacheLine/8))},
		top: make([]*fastjson.Value, len(p.top), max(len(p.top), cacheLine/8)),
		key: make([]byte, 0, cacheLine), num: make([]byte, 0, cacheLine)}
}

// extract parses rec. On success it returns the event time (unix ms) and
// fills x.ev and x.key.
func (x *extractor) extract(rec *log.Record) (int64, reason, bool) {
	t, r, ok := x.extractEvent(rec)
	if x.shadowBad && (ok || r == reasonMissingTime || r == reasonBadTime) {
		// A strict parser rejects the whole line, whichever value of the
		// name it would have kept.
		return 0, reasonInvalidJSON, false
	}
	return t, r, ok
}

func (x *extractor) extractEvent(rec *log.Record) (int64, reason, bool) {
	if jsontext.TooDeep(rec.Value) {
		return 0, reasonInvalidJSON, false // fastjson would refuse it, slowly
	}
	v, err := x.parser.ParseBytes(rec.Value)
	if err != nil {
		return 0, reasonInvalidJSON, false
	}
	if v.Type() != fastjson.TypeObject {
		return 0, reasonNotObject, false
	}
	x.readTop(v, bytes.IndexByte(rec.Value, '\\') < 0)
	// The group key first: it is the values' JSON text as written, which
	// reading a string (below) would replace by its decoded value.
	x.key = x.key[:0]
	for i, path := range x.p.groupBy {
		if i > 0 {
			x.key = append(x.key, 0)
		}
		if g := x.get(path); g != nil {
			x.key = g.MarshalTo(x.key)
		} else {
			x.key = append(x.key, "null"...)
		}
	}
	// Then what may make the record invalid JSON, before what may make it
	// a bad event: a strict parser rejects the whole line.
	ev := &x.ev
	ev.Preds, ev.Has = 0, 0
	for i := range x.p.preds {
		pr := &x.p.preds[i]
		holds, valid := pr.eval(x.get(pr.field), x)
		if !valid {
			return 0, reasonInvalidJSON, false
		}
		if holds {
			ev.Preds |= 1 << uint(i)
		}
	}
	for i, path := range x.p.fields {
		if f := x.get(path); f != nil && f.Type() == fastjson.TypeNumber {
			n, ok := x.number(f)
			if !ok {
				return 0, reasonInvalidJSON, false
			}
			if math.IsInf(n, 0) {
				// Past float64's range (1e400: JSON, but ±Inf here): not a
				// number a sum, min or max can hold, so ignored like a
				// string, rather than turning the window's metrics null.
				continue
			}
			ev.Values[i] = n
			ev.Has |= 1 << uint(i)
		}
	}
	t := rec.TimestampMs
	if x.p.hasTime {
		tv := x.get(x.p.timePath)
		if tv == nil || tv.Type() == fastjson.TypeNull {
			return 0, reasonMissingTime, false
		}
		var r reason
		var ok bool
		if t, r, ok = x.eventTime(tv); !ok {
			return 0, r, false
		}
	}
	if t < minEventMs || t > maxEventMs {
		return 0, reasonBadTime, false
	}
	return t, 0, true
}

// readTop finds, in one pass over object v, the values of the top-level
// names the pipeline reads. A name an object holds twice takes its last
// value, as encoding/json, Python's json and Jackson (Flink's JSON format)
// decode it; fastjson's Get would take the first. plain says the record
// has no backslash, so that its names are as written (x.plain).
func (x *extractor) readTop(v *fastjson.Value, plain bool) {
	clear(x.top)
	x.shadowBad = false
	if len(x.top) == 0 {
		return
	}
	x.plain = plain && rawKeys && !x.visit
	if x.plain {
		for _, kv := range (*rawObject)(unsafe.Pointer(v)).kvs {
			for i, name := range x.p.top {
				if kv.k == name {
					if x.top[i] != nil {
						x.shadow(x.top[i])
					}
					x.top[i] = kv.v
					break
				}
			}
		}
		return
	}
	o, _ := v.Object()
	o.Visit(func(k []byte, v *fastjson.Value) {
		for i, name := range x.p.top {
			if string(k) == name {
				if x.top[i] != nil {
					x.shadow(x.top[i])
				}
				x.top[i] = v
				return
			}
		}
	})
}

// get returns the value at f in the record readTop read, or nil.
func (x *extractor) get(f field) *fastjson.Value {
	v := x.top[f.top]
	for _, name := range f.rest {
		if v == nil {
			return nil
		}
		v = x.child(v, name)
	}
	return v
}

// child returns the value of name in object v (the last, if v holds it
// twice), element name of array v, or nil.
func (x *extractor) child(v *fastjson.Value, name string) *fastjson.Value {
	switch v.Type() {
	case fastjson.TypeObject:
		var last *fastjson.Value
		if x.plain {
			for _, kv := range (*rawObject)(unsafe.Pointer(v)).kvs {
				if kv.k == name {
					if last != nil {
						x.shadow(last)
					}
					last = kv.v
				}
			}
			return last
		}
		o, _ := v.Object()
		o.Visit(func(k []byte, v *fastjson.Value) {
			if string(k) == name {
				if last != nil {
					x.shadow(last)
				}
				last = v
			}
		})
		return last
	case fastjson.TypeArray:
		return v.Get(name)
	}
	return nil
}

// shadow checks v, a value the pipeline would read but for a later value
// of the same name in the object, as it checks what it reads
// (jsontext.ValidValue): a strict parser rejects a record that holds
// {"v":01,"v":2}, though it would keep the 2. Names repeat rarely: the
// callers test for a value already found before they call it.
func (x *extractor) shadow(v *fastjson.Value) {
	if x.shadowBad {
		return
	}
	x.num = v.MarshalTo(x.num[:0])
	x.shadowBad = !jsontext.ValidValue(x.num)
}

// rawObject is the layout of a fastjson.Value holding an object: its
// Object's names and values, first. Object.Visit, the one way fastjson
// gives to see every name, first unescapes every name (a search for a
// backslash in each) and calls a function per name: that made the
// per-event path ~9% slower than four Gets, which stop at the first
// match. A record without a backslash has no name to unescape, so the
// extractor reads the names themselves; rawKeys checks, once, that
// fastjson's types are laid out as rawObject says, and the extractor
// goes through Visit if they are not.
type rawObject struct {
	kvs []rawKV
	_   bool // keysUnescaped
}

type rawKV struct {
	k string
	v *fastjson.Value
}

var rawKeys = rawLayoutMatches(reflect.TypeFor[fastjson.Value]())

// rawValue is the layout of a fastjson.Value: the text of a number, or of
// a string not decoded yet (typeRawString: GetStringBytes decodes it in
// place), is s, as the record holds it. Reading it there (rawText) spares
// the extractor a copy (MarshalTo) per number and string it reads.
type rawValue struct {
	o rawObject
	a []*fastjson.Value
	s string
	t fastjson.Type
}

// typeRawString is fastjson's type of a string whose escapes are not
// decoded yet; Type reports it as TypeString.
const typeRawString fastjson.Type = 7

// rawValues: fastjson.Value is laid out as rawValue says, checked on its
// fields and on what it holds for a parsed number and string.
var rawValues = rawKeys && rawValueLayoutMatches()

func rawValueLayoutMatches() bool {
	vt, want := reflect.TypeFor[fastjson.Value](), reflect.TypeFor[rawValue]()
	if vt.Size() != want.Size() || vt.NumField() != want.NumField() {
		return false
	}
	for i := range vt.NumField() {
		f, w := vt.Field(i), want.Field(i)
		if f.Offset != w.Offset || f.Type.Size() != w.Type.Size() || f.Type.Kind() != w.Type.Kind() {
			return false
		}
	}
	var p fastjson.Parser
	v, err := p.Parse(`{"n":-1.5e3,"s":"a\u0062"}`)
	if err != nil {
		return false
	}
	n, s := (*rawValue)(unsafe.Pointer(v.Get("n"))), (*rawValue)(unsafe.Pointer(v.Get("s")))
	return n.t == fastjson.TypeNumber && n.s == "-1.5e3" && s.t == typeRawString && s.s == `a\u0062`
}

// rawText returns, without copying, the JSON text fastjson holds for v: a
// number's, or a string's between its quotes (isString) while its
// escapes are not decoded. ok is false for other values, a decoded
// string, or if fastjson is not laid out as rawValue says (or x.visit,
// in tests): then the caller asks fastjson for the text (MarshalTo). The
// text is the parser's, valid until its next parse: read it, do not keep
// it.
func (x *extractor) rawText(v *fastjson.Value) (text []byte, isString, ok bool) {
	if !rawValues || x.visit {
		return nil, false, false
	}
	rv := (*rawValue)(unsafe.Pointer(v))
	switch rv.t {
	case fastjson.TypeNumber:
		return unsafe.Slice(unsafe.StringData(rv.s), len(rv.s)), false, true
	case typeRawString:
		return unsafe.Slice(unsafe.StringData(rv.s), len(rv.s)), true, true
	}
	return nil, false, false
}

// rawLayoutMatches reports whether value type vt (fastjson.Value) begins
// with an Object whose first field is a slice of rawKV's layout.
func rawLayoutMatches(vt reflect.Type) bool {
	if vt.Kind() != reflect.Struct || vt.NumField() == 0 {
		return false
	}
	o := vt.Field(0)
	if o.Offset != 0 || o.Type.Kind() != reflect.Struct || o.Type.NumField() == 0 {
		return false
	}
	kvs := o.Type.Field(0)
	if kvs.Offset != 0 || kvs.Type.Kind() != reflect.Slice {
		return false
	}
	kv, want := kvs.Type.Elem(), reflect.TypeFor[rawKV]()
	if kv.Kind() != reflect.Struct || kv.Size() != want.Size() || kv.NumField() != want.NumField() {
		return false
	}
	for i := range kv.NumField() {
		f, w := kv.Field(i), want.Field(i)
		if f.Offset != w.Offset || f.Type.Kind() != w.Type.Kind() {
			return false
		}
	}
	return kv.Field(0).Type == reflect.TypeFor[string]() && kv.Field(1).Type == reflect.TypeFor[*fastjson.Value]()
}

// The event times a pipeline takes: the years 0000 to 9999 that RFC 3339
// writes (results print window bounds in it), far enough from int64's
// ends that window ends, watermarks and lateness bounds cannot overflow.
// A time past them — a unit mistaken, a Kafka client's garbage — would
// otherwise wrap a window's end around and drag the watermark to where
// every later event is too late.
const (
	minEventMs = -62167219200000 // 0000-01-01T00:00:00Z
	maxEventMs = 253402300799999 // 9999-12-31T23:59:59.999Z
)

// eventTime reads a time field in the plan's unit as unix ms, floored;
// or why it cannot: bad_time, or invalid_json for a number that is not
// JSON.
func (x *extractor) eventTime(tv *fastjson.Value) (int64, reason, bool) {
	if x.p.unit == unitRFC3339 {
		if tv.Type() != fastjson.TypeString {
			return 0, reasonBadTime, false
		}
		if t, ok := parseRFC3339Ms(tv.GetStringBytes()); ok {
			return t, 0, true
		}
		return 0, reasonBadTime, false
	}
	if tv.Type() != fastjson.TypeNumber {
		return 0, reasonBadTime, false
	}
	// The number's own text, parsed once and exactly, so that
	// 1795341600.123 seconds is ...123 ms, not 122 after a trip through
	// float64.
	num, _, ok := x.rawText(tv)
	if !ok {
		x.num = tv.MarshalTo(x.num[:0])
		num = x.num
	}
	shift := 0
	switch x.p.unit {
	case unitS:
		shift = 3
	case unitUs:
		shift = -3
	case unitNs:
		shift = -6
	}
	if t, ok := decimalMs(num, shift); ok {
		return t, 0, true
	}
	if !validNumber(num) {
		return 0, reasonInvalidJSON, false
	}
	return 0, reasonBadTime, false // out of range
}

// number parses number f from its text (parseNumber); ok is false if the
// text is not a JSON number.
func (x *extractor) number(f *fastjson.Value) (float64, bool) {
	if t, _, ok := x.rawText(f); ok {
		return parseNumber(t) // the usual way, in line
	}
	return parseNumber(x.numberText(f))
}

// numberText returns the text of number f.
func (x *extractor) numberText(f *fastjson.Value) []byte {
	if t, _, ok := x.rawText(f); ok {
		return t
	}
	x.num = f.MarshalTo(x.num[:0])
	return x.num
}

// eval reports whether the predicate holds for f, the record's value of
// its field (nil: absent); valid is false if f is a number that is not
// JSON (validNumber). x reads f's text.
func (p *predicate) eval(f *fastjson.Value, x *extractor) (holds, valid bool) {
	if f == nil {
		return false, true
	}
	switch p.kind {
	case litString:
		if p.op == opEq || p.op == opNe {
			if holds, decided := p.evalText(f, x); decided {
				return holds, true
			}
		}
		if f.Type() != fastjson.TypeString {
			return false, true
		}
		return p.op.cmp(bytes.Compare(f.GetStringBytes(), p.s)), true
	case litNumber:
		if f.Type() != fastjson.TypeNumber {
			return false, true
		}
		n, ok := x.number(f)
		if !ok {
			return false, false
		}
		if n == p.f && p.big {
			return p.op.cmp(p.exactCmp(x.numberText(f))), true
		}
		return p.op.num(n, p.f), true
	case litBool:
		t := f.Type()
		if t != fastjson.TypeTrue && t != fastjson.TypeFalse {
			return false, true
		}
		return (t == fastjson.TypeTrue) == p.b == (p.op == opEq), true
	}
	return (f.Type() == fastjson.TypeNull) == (p.op == opEq), true
}

// evalText decides == and != on a string literal from f's JSON text,
// without decoding escapes, where the text is enough: f is not a string
// (false either way), its text is the literal's bytes (a literal without
// backslashes), or its text is no longer than the literal but differs.
// Decoding a string's escapes only shortens it, so such a text cannot
// decode to the literal. A longer text leaves it undecided: the caller
// decodes.
func (p *predicate) evalText(f *fastjson.Value, x *extractor) (holds, decided bool) {
	t, isString, ok := x.rawText(f)
	if !ok {
		x.num = f.MarshalTo(x.num[:0])
		t = x.num
		if isString = t[0] == '"'; isString {
			t = t[1 : len(t)-1]
		}
	}
	if !isString {
		return false, true
	}
	switch {
	case len(t) < len(p.s):
		return p.op == opNe, true
	case len(t) == len(p.s):
		if string(t) == string(p.s) {
			return p.op == opEq, p.plain
		}
		return p.op == opNe, true
	}
	return false, false
}
