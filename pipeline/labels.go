package pipeline

import "strconv"

// LabelNames are the label names of group-by fields where Prometheus and
// Alertmanager show a key (GET /metrics, the alertmanager webhook): a
// label name is [a-zA-Z_][a-zA-Z0-9_]*, so what else a field holds
// becomes "_" (host.name: host_name), a name starting with "__" (which
// Prometheus reserves) gets an "f" before it, and a name that comes out
// as another field's, or as one of taken (an alert's own labels), is
// numbered from 2 (host_name_2, severity_2). Alertmanager refuses a whole
// post that holds one invalid label name.
func LabelNames(groupBy []string, taken ...string) []string {
	used := map[string]bool{}
	for _, n := range taken {
		used[n] = true
	}
	names := make([]string, len(groupBy))
	for i, f := range groupBy {
		base := labelName(f)
		n := base
		for k := 2; used[n]; k++ {
			n = base + "_" + strconv.Itoa(k)
		}
		used[n] = true
		names[i] = n
	}
	return names
}

func labelName(f string) string {
	b := []byte(f)
	for i, c := range b {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0) {
			b[i] = '_'
		}
	}
	if len(b) >= 2 && b[0] == '_' && b[1] == '_' {
		return "f" + string(b)
	}
	return string(b)
}
