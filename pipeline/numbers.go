package pipeline

// The text of numbers and times as events write them: JSON's number
// grammar, held strictly; floats parsed to the nearest float64; event
// times parsed exactly to unix milliseconds, without a trip through
// float64.

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"unsafe"
)

// decimal is a JSON number's value: mant × 10^exp, negative if neg, with
// sticky set if nonzero digits past the 19th were dropped.
type decimal struct {
	mant   uint64
	exp    int
	neg    bool
	sticky bool
}

// scanNumber reads the JSON number text s (RFC 8259:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?); ok is false if s is
// anything else. fastjson's parser takes more — NaN, Infinity, inf, 01,
// .5, 1., +1 — which strict parsers (encoding/json, Jackson) reject, and
// so does the pipeline where it reads a number.
func scanNumber(s []byte) (d decimal, ok bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		d.neg = true
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for ; i < len(s) && s[i]-'0' <= 9; i++ {
			if d.mant > (math.MaxUint64-9)/10 {
				d.exp++ // integer digits beyond 19: scale instead
				d.sticky = d.sticky || s[i] != '0'
				continue
			}
			d.mant = d.mant*10 + uint64(s[i]-'0')
		}
	default:
		return d, false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for ; i < len(s) && s[i]-'0' <= 9; i++ {
			if d.mant > (math.MaxUint64-9)/10 {
				d.sticky = d.sticky || s[i] != '0'
				continue
			}
			d.mant = d.mant*10 + uint64(s[i]-'0')
			d.exp--
		}
		if i == start {
			return d, false
		}
	}
	if i < len(s) && s[i]|0x20 == 'e' {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		start, e := i, 0
		for ; i < len(s) && s[i]-'0' <= 9; i++ {
			if e < 10000 { // far past any float64
				e = e*10 + int(s[i]-'0')
			}
		}
		if i == start {
			return d, false
		}
		if eneg {
			e = -e
		}
		d.exp += e
	}
	return d, i == len(s)
}

// validNumber reports whether s is a JSON number (scanNumber).
func validNumber(s []byte) bool {
	_, ok := scanNumber(s)
	return ok
}

// pow10 holds the powers of ten a float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseNumber parses the JSON number text s (scanNumber) into the nearest
// float64, as encoding/json does; ok is false if s is not a JSON number.
// A mantissa below 2^53 and an exponent within ±22 — what events hold —
// take one exact multiplication or division (Clinger's fast path);
// anything else goes to strconv.ParseFloat.
func parseNumber(s []byte) (float64, bool) {
	d, ok := scanNumber(s)
	if !ok {
		return 0, false
	}
	if d.mant <= 1<<53 && !d.sticky && d.exp >= -22 && d.exp <= 22 {
		f := float64(d.mant)
		if d.exp < 0 {
			f /= pow10[-d.exp]
		} else {
			f *= pow10[d.exp]
		}
		if d.neg {
			f = -f
		}
		return f, true
	}
	f, _ := strconv.ParseFloat(unsafe.String(&s[0], len(s)), 64) // ±Inf beyond the range, as fastjson gave
	return f, true
}

// decimalMs returns floor(value × 10^shift) for the JSON number text s,
// exactly, with no float arithmetic. ok is false on overflow or if s is
// not a JSON number.
func decimalMs(s []byte, shift int) (int64, bool) {
	if shift == 0 && len(s) > 0 && s[0] != '0' { // a leading zero is 0, 0.x or not JSON
		if v, ok := msDigits(s); ok {
			return v, true
		}
	}
	return decimalScaled(s, shift)
}

// msDigits parses the common case, milliseconds as an integer of 9 to 16
// digits (13 from 2001 to 2286): the last eight digits, and the first ones
// read as eight with '0's in front. ok is false if s is anything else.
func msDigits(s []byte) (int64, bool) {
	if len(s) <= 8 || len(s) > 16 {
		return 0, false
	}
	k := len(s) - 8
	pad := uint64(0x3030303030303030) >> (8 * k)
	hi, ok1 := eightDigitsWord(binary.LittleEndian.Uint64(s)<<(8*(8-k)) | pad)
	lo, ok2 := eightDigits(s[k:])
	return int64(hi*1e8 + lo), ok1 && ok2
}

// eightDigits parses the 8 ASCII digits at the start of b with a few
// multiplications on one word (SWAR); ok is false if one is not a digit.
func eightDigits(b []byte) (uint64, bool) {
	return eightDigitsWord(binary.LittleEndian.Uint64(b))
}

// eightDigitsWord is eightDigits on the 8 bytes loaded little-endian.
func eightDigitsWord(x uint64) (uint64, bool) {
	// Every byte in '0'..'9': its high nibble is 3, and adding 6 to it
	// does not carry into the high nibble.
	if x&0xF0F0F0F0F0F0F0F0 != 0x3030303030303030 ||
		(x+0x0606060606060606)&0xF0F0F0F0F0F0F0F0 != 0x3030303030303030 {
		return 0, false
	}
	x -= 0x3030303030303030
	x = x*10 + x>>8 // pairs: each even byte holds a two-digit number
	x = ((x&0x000000FF000000FF)*(100+(1000000<<32)) + (x>>16&0x000000FF000000FF)*(1+(10000<<32))) >> 32
	return x, true
}

// decimalScaled is decimalMs for any JSON number (scanNumber): sign,
// fraction and exponent, with digits beyond 19 folded into the exponent.
func decimalScaled(s []byte, shift int) (int64, bool) {
	d, ok := scanNumber(s)
	if !ok {
		return 0, false
	}
	mant, exp, sticky := d.mant, d.exp+shift, d.sticky
	for exp > 0 {
		if mant > math.MaxInt64/10 {
			return 0, false
		}
		mant *= 10
		exp--
	}
	for exp < 0 && mant > 0 {
		if mant%10 != 0 {
			sticky = true
		}
		mant /= 10
		exp++
	}
	if mant > math.MaxInt64 {
		return 0, false
	}
	v := int64(mant)
	if d.neg {
		v = -v
		if sticky {
			v-- // floor toward -inf
		}
	}
	return v, true
}

// parseRFC3339Ms parses an RFC 3339 timestamp (fractional seconds and any
// offset) into unix ms, floored, without allocating.
func parseRFC3339Ms(s []byte) (int64, bool) {
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':' {
		return 0, false
	}
	if c := s[10]; c != 'T' && c != 't' && c != ' ' {
		return 0, false
	}
	year, ok1 := num(s[0:4])
	month, ok2 := num(s[5:7])
	day, ok3 := num(s[8:10])
	hour, ok4 := num(s[11:13])
	minute, ok5 := num(s[14:16])
	sec, ok6 := num(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 ||
		day > daysIn(year, month) || hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}
	rest := s[19:]
	ms := 0
	if len(rest) > 0 && rest[0] == '.' {
		j := 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			if j <= 3 {
				ms = ms*10 + int(rest[j]-'0')
			}
			j++
		}
		if j == 1 {
			return 0, false
		}
		for k := j; k <= 3; k++ {
			ms *= 10
		}
		rest = rest[j:]
	}
	offset := 0
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := num(rest[1:3])
		om, ok2 := num(rest[4:6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return 0, false
		}
		offset = (oh*60 + om) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}
	days := daysFromCivil(year, month, day)
	unix := days*86400 + int64(hour*3600+minute*60+sec) - int64(offset)
	return unix*1000 + int64(ms), true
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is Howard Hinnant's days_from_civil: days since 1970-01-01.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// exactInts is 2^53: every integer of a smaller magnitude is a float64,
// so a number whose float64 is below it in magnitude rounds to a float64
// no other integer rounds to. From it on, integers share float64s
// (9007199254740993 is 9007199254740992 in float64): IDs, nanosecond
// times.
const exactInts = 1 << 53

// intText reads s, a JSON number's text or a where literal, as an
// integer: its sign and its digits without leading zeros ("0" for zero,
// which is not negative). ok is false if s has a fraction or an exponent,
// or is not [+-]digits.
func intText(s []byte) (neg bool, digits []byte, ok bool) {
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	if len(s) == 0 {
		return false, nil, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false, nil, false
		}
	}
	for len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	return neg && s[0] != '0', s, true
}

// cmpInts compares two integers as intText gives them: -1, 0 or +1.
func cmpInts(aNeg bool, a []byte, bNeg bool, b []byte) int {
	if aNeg != bNeg {
		if aNeg {
			return -1
		}
		return 1
	}
	c := len(a) - len(b)
	if c == 0 {
		c = bytes.Compare(a, b)
	}
	c = min(max(c, -1), 1)
	if aNeg {
		return -c
	}
	return c
}

// exactCmp compares the number of JSON text v, whose float64 is p.f (and
// p.big: 2^53 or more in magnitude), with p's literal exactly: -1, 0 or
// +1. An integer is the integer it writes; a number with a fraction or an
// exponent is its float64, as Python's json module reads them (the
// Python reference checks it). So `id == 9007199254740993` holds for that
// ID only, not for 9007199254740992 too, as float64s would have it.
func (p *predicate) exactCmp(v []byte) int {
	vNeg, vDigits, vInt := intText(v)
	switch {
	case vInt && p.litInt:
		return cmpInts(vNeg, vDigits, p.litNeg, p.s)
	case !vInt && !p.litInt:
		return 0 // both are p.f
	case math.IsInf(p.f, 0):
		// The integer is finite; the other is p.f, ±Inf (1e400).
		c := -1 // the integer is below +Inf
		if p.f < 0 {
			c = 1
		}
		if !vInt {
			c = -c
		}
		return c
	}
	// One is an integer, the other p.f, itself an integer from 2^53 on:
	// its digits, exactly.
	var buf [320]byte
	fDigits := strconv.AppendFloat(buf[:0], math.Abs(p.f), 'f', 0, 64)
	if vInt {
		return cmpInts(vNeg, vDigits, p.f < 0, fDigits)
	}
	return cmpInts(p.f < 0, fDigits, p.litNeg, p.s)
}
