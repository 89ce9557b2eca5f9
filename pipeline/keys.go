package pipeline

import (
	"bytes"
	"hash/maphash"
	"math"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/fastflow/fastflow/log"
)

// keyTable interns group keys (the group-by values as JSON, NUL-separated)
// to small integer IDs shared by all workers. Workers look keys up in a
// cache of their own and take the table's lock only for a key they have
// not seen: once per key per worker, never per event.
//
// It also remembers the source partition each key's events come from, so
// that a pipeline's state can be split by partition when partitions move
// between instances (a Kafka source): that takes every key's events on one
// partition, as producing with the group-by fields as the record key
// gives. A key seen on two partitions is counted in spread.
type keyTable struct {
	mu      sync.Mutex
	ids     map[string]uint32
	keys    []string
	part    []int32 // the partition a key's events come from; noPartition before any
	spread  []bool  // seen on more than one partition
	nSpread int
}

// noPartition: a key restored from a checkpoint before any event.
const noPartition = -1

func newKeyTable() *keyTable { return &keyTable{ids: map[string]uint32{}} }

func (kt *keyTable) intern(k string) uint32 {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	return kt.internLocked(k)
}

func (kt *keyTable) internLocked(k string) uint32 {
	id, ok := kt.ids[k]
	if !ok {
		id = uint32(len(kt.keys))
		kt.ids[k] = id
		kt.keys = append(kt.keys, k)
		kt.part = append(kt.part, noPartition)
		kt.spread = append(kt.spread, false)
	}
	return id
}

// internAt interns k, seen on partition p.
func (kt *keyTable) internAt(k string, p int32) uint32 {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	id := kt.internLocked(k)
	kt.seenLocked(id, p)
	return id
}

// seen records that key id had an event on partition p.
func (kt *keyTable) seen(id uint32, p int32) {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	kt.seenLocked(id, p)
}

func (kt *keyTable) seenLocked(id uint32, p int32) {
	switch cur := kt.part[id]; {
	case cur == noPartition:
		kt.part[id] = p
	case cur != p && !kt.spread[id]:
		kt.spread[id] = true
		kt.nSpread++
	}
}

// partition returns the partition key id's events come from, or
// noPartition.
func (kt *keyTable) partition(id uint32) int32 {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	return kt.part[id]
}

// spreadKeys is how many keys had events on more than one partition.
func (kt *keyTable) spreadKeys() int {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	return kt.nSpread
}

// key returns the encoded key of id.
func (kt *keyTable) key(id uint32) string {
	kt.mu.Lock()
	defer kt.mu.Unlock()
	return kt.keys[id]
}

// keyCache is a worker's view of the table.
type keyCache struct {
	kt  *keyTable
	ids map[string]cachedKey
	// A direct-mapped cache in front of ids, by a hash of the key's bytes:
	// a hit costs a hash and a compare, where the map costs a hash and a
	// probe. Keys that share a slot only fall through to the map.
	slots [keySlots]keySlot
	seed  maphash.Seed
}

const keySlots = 256

type keySlot struct {
	key  []byte
	id   uint32
	part int32
}

type cachedKey struct {
	id   uint32
	part int32 // the partition this worker last saw it on
}

// id returns the ID of encoded key b, seen on partition p. The lookup with
// string(b) does not allocate; a key new to this worker allocates once.
func (c *keyCache) id(b []byte, p int32) uint32 {
	s := &c.slots[maphash.Bytes(c.seed, b)%keySlots]
	if s.key != nil && s.part == p && string(b) == string(s.key) {
		return s.id
	}
	id := c.lookup(b, p)
	s.key, s.id, s.part = append(s.key[:0], b...), id, p
	return id
}

// invalidKey is the ID of a key whose text is not JSON (validKey): its
// events are rejected as invalid_json. It is never interned.
const invalidKey = ^uint32(0)

// lookup is id past the slots: the map, and the table for a new key.
func (c *keyCache) lookup(b []byte, p int32) uint32 {
	if ck, ok := c.ids[string(b)]; ok {
		if ck.part != p && ck.id != invalidKey {
			// Rare unless keys are spread over partitions.
			c.kt.seen(ck.id, p)
			c.ids[string(b)] = cachedKey{ck.id, p}
		}
		return ck.id
	}
	k := string(b)
	id := invalidKey
	if canonical, ok := canonicalKey(b); ok {
		id = c.kt.internAt(canonical, p)
	}
	c.ids[k] = cachedKey{id, p}
	return id
}

// canonicalKey turns a group key as the extractor writes it — each value's
// JSON text as the event wrote it, NUL-separated — into the key interned:
// strings by their decoded value (invalid UTF-8 as U+FFFD) written back
// by log.AppendJSONString, so that "a\u0062" and "ab" are one group;
// numbers by the number they denote (canonicalNumber); booleans, null,
// objects and arrays by their text. Workers cache keys by the text,
// so this runs once per distinct text, never per event. ok is false if a
// string or a number is not valid JSON (validKey).
func canonicalKey(b []byte) (key string, ok bool) {
	if !validKey(b) {
		return "", false
	}
	var out []byte
	var p fastjson.Parser
	for len(b) > 0 {
		n := valueLen(b)
		v := b[:n]
		switch {
		case len(v) >= 2 && v[0] == '"' && !plainJSON(v[1:len(v)-1]):
			if s, err := p.ParseBytes(v); err == nil && s.Type() == fastjson.TypeString {
				v = log.AppendJSONString(nil, validUTF8(s.GetStringBytes()))
			}
		case len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9'):
			v = canonicalNumber(v)
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
// holds only strings and numbers a strict JSON parser takes: fastjson's
// parser also takes raw control characters and unknown escapes in strings,
// and numbers such as NaN or 01 (validNumber). Objects and arrays are not
// looked into.
func validKey(b []byte) bool {
	for len(b) > 0 {
		n := valueLen(b)
		v := b[:n]
		switch {
		case len(v) == 0:
			return false
		case v[0] == '"':
			if len(v) < 2 || !validStringText(v[1:len(v)-1]) {
				return false
			}
		case v[0] == '{' || v[0] == '[' || string(v) == "true" || string(v) == "false" || string(v) == "null":
		default:
			if !validNumber(v) {
				return false
			}
		}
		b = b[min(n+1, len(b)):]
	}
	return true
}

// validStringText reports whether s, the text between a JSON string's
// quotes, has no raw control character and only JSON's escapes.
func validStringText(s []byte) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20:
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
	if bytes.IndexAny(v, ".eE") < 0 {
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
		return []byte("0")
	}
	// encoding/json's float64 format (ES6 number to string).
	abs, format := math.Abs(f), byte('f')
	if abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	b := strconv.AppendFloat(nil, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
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
