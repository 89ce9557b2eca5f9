package jsontext

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestValidValue(t *testing.T) {
	for _, v := range []string{`"a"`, `""`, `"a\"b\\c\/\b\f\n\r\t\u00e9\uD83D\uDE00"`, `0`, `-0`, `1.5e3`, `-12.25E-3`, `1e+9`,
		`true`, `false`, `null`, `{"a":NaN}`, `[01]`, "\"\xff\""} {
		if !ValidValue([]byte(v)) {
			t.Errorf("%q: not valid", v)
		}
	}
	for _, v := range []string{``, `"`, `"a`, `"\0"`, `"\x41"`, "\"a\tb\"", `"\u12"`, `"\u12g4"`, `"a\"`, `""00"`, `01`, `-`, `+1`, `.5`, `1.`,
		`1e`, `1e+`, `NaN`, `Infinity`, `-Infinity`, `inf`, `0x10`, `1 `, ` 1`, `tru`, `nul`} {
		if ValidValue([]byte(v)) {
			t.Errorf("%q: valid", v)
		}
	}
}

// FuzzValidValue: for a string, number or literal, ValidValue says what
// encoding/json says (which, like ValidValue, does not ask for UTF-8).
func FuzzValidValue(f *testing.F) {
	for _, s := range []string{`"a\u0062"`, `-1.5e-3`, `01`, `"\0"`, `true`, "\"\x01\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if len(v) == 0 || v[0] == '{' || v[0] == '[' || len(bytes.TrimSpace(v)) != len(v) {
			return
		}
		if got, want := ValidValue(v), json.Valid(v); got != want {
			t.Fatalf("ValidValue(%q) = %v, encoding/json says %v", v, got, want)
		}
	})
}
