package server

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/fastflow/fastflow/pipeline"
)

// TestStoreKeepsRecentKeys: past keepKeys keys or keepLines windows, the
// store drops the key updated least recently, from the query API and the
// gauges alike; a key updated again moves to the front.
func TestStoreKeepsRecentKeys(t *testing.T) {
	defer func(k, l int) { keepKeys, keepLines = k, l }(keepKeys, keepLines)
	keepKeys, keepLines = 3, 5
	s := newStore([]*pipeline.Config{{Name: "p", GroupBy: []string{"user"}}})
	s.pipes["p"].metrics = []string{"n"}
	add := func(user string, start int64) {
		line := fmt.Sprintf(`{"type":"window","pipeline":"p","key":{"user":%q},"window_start":"x","window_end":"y","revision":0,"metrics":{"n":1}}`, user)
		s.observe(&pipeline.Result{Pipeline: "p", Line: []byte(line), StartMs: start, EndMs: start + 1})
	}
	keys := func() (names []string) {
		for _, g := range s.gauges() {
			names = append(names, string(g.key))
		}
		lines, _ := s.windows("p", "", 0, 0)
		if len(lines) > keepLines {
			t.Fatalf("%d windows held", len(lines))
		}
		if len(s.pipes["p"].keys) != len(names) || s.pipes["p"].byUse.Len() != len(names) {
			t.Fatalf("%d keys, %d in use order, %d gauges", len(s.pipes["p"].keys), s.pipes["p"].byUse.Len(), len(names))
		}
		return names
	}
	add("a", 0)
	add("b", 0)
	add("c", 0)
	add("a", 1) // a is the newest now
	add("d", 0) // four keys: b goes
	if _, ok := s.pipes["p"].keys[`{"user":"b"}`]; ok || len(keys()) != 3 {
		t.Fatalf("after d: %v", keys())
	}
	add("a", 2) // a: 3 windows, c and d 1 each: 5 lines
	add("a", 3) // 6 lines: c (least recent) goes
	if _, ok := s.pipes["p"].keys[`{"user":"c"}`]; ok || len(keys()) != 2 || s.pipes["p"].lines != 5 {
		t.Fatalf("after a's 4th window: %v, %d lines", keys(), s.pipes["p"].lines)
	}
	if ws, _ := s.windows("p", "a", 0, 0); len(ws) != 4 {
		t.Fatalf("a has %d windows", len(ws))
	}
	// keys=1: the key updated most recently (a); keys=2: a and d, by name.
	for keys, want := range map[int]string{1: `"a"`, 2: `"a" "d"`} {
		ws, _ := s.windows("p", "", 1, keys)
		var got []string
		for _, w := range ws {
			got = append(got, regexp.MustCompile(`"user":("[a-z]")`).FindStringSubmatch(string(w))[1])
		}
		if strings.Join(got, " ") != want {
			t.Fatalf("keys=%d: %v, want %s", keys, got, want)
		}
	}
}
