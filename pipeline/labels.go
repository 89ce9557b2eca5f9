package pipeline

import (
	"encoding/json"
	"strconv"
)

// PromName is s as Prometheus takes a metric or label name: what is not
// [a-zA-Z_] (and, past the first character, [0-9]) becomes "_".
func PromName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0) {
			b[i] = '_'
		}
	}
	return string(b)
}

// LabelNames are the label names of group-by fields where Prometheus and
// Alertmanager show a key (GET /metrics, the alertmanager webhook):
// PromName's (host.name: host_name), with an "f" before a name starting
// with "__" (which Prometheus reserves), and numbered from 2 where a name
// comes out as another field's, or as one of taken (an alert's own
// labels): host_name_2, severity_2. Alertmanager refuses a whole post that
// holds one invalid label name.
func LabelNames(groupBy []string, taken ...string) []string {
	used := map[string]bool{}
	for _, n := range taken {
		used[n] = true
	}
	names := make([]string, len(groupBy))
	for i, f := range groupBy {
		base := PromName(f)
		if len(base) >= 2 && base[:2] == "__" {
			base = "f" + base
		}
		n := base
		for k := 2; used[n]; k++ {
			n = base + "_" + strconv.Itoa(k)
		}
		used[n] = true
		names[i] = n
	}
	return names
}

// LabelValue is a group-by value, as the key writes it in JSON, as a
// label's value: a string's text, a number, object or array as written;
// null (a missing field) is no value: "", false.
func LabelValue(text []byte) (string, bool) {
	if len(text) == 0 || string(text) == "null" {
		return "", false
	}
	var s string
	if text[0] == '"' && json.Unmarshal(text, &s) == nil {
		return s, true
	}
	return string(text), true
}
