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

// TestStoreSessionsReplaceWhatTheyMerge: a session that a late event
// merged with later sessions, or extended back before its start, replaces
// the sessions it swallowed in the query API; a hopping pipeline's
// overlapping windows all stay.
func TestStoreSessionsReplaceWhatTheyMerge(t *testing.T) {
	s := newStore([]*pipeline.Config{
		{Name: "s", GroupBy: []string{"k"}, Window: pipeline.WindowConfig{Type: "session"}},
		{Name: "h", GroupBy: []string{"k"}, Window: pipeline.WindowConfig{Type: "hopping"}},
	})
	add := func(pipe string, start, end int64, n int) {
		line := fmt.Sprintf(`{"type":"window","pipeline":%q,"key":{"k":"a"},"window_start":"%d","window_end":"%d","revision":0,"metrics":{"n":%d}}`, pipe, start, end, n)
		s.observe(&pipeline.Result{Pipeline: pipe, Line: []byte(line), StartMs: start, EndMs: end})
	}
	starts := func(pipe string) string {
		ws, _ := s.windows(pipe, "", 0, 0)
		var got []string
		for _, w := range ws {
			got = append(got, regexp.MustCompile(`"window_start":"(\d+)","window_end":"(\d+)".*"n":(\d+)`).FindStringSubmatch(string(w))[1:]...)
		}
		return strings.Join(got, " ")
	}
	add("s", 0, 30, 1)
	add("s", 40, 70, 1)
	add("s", 100, 130, 1)
	add("s", 0, 70, 3)   // a late event at 25 bridged the first two
	add("s", 90, 130, 2) // one at 90 extended the third back
	if got, want := starts("s"), "0 70 3 90 130 2"; got != want || s.pipes["s"].lines != 2 {
		t.Fatalf("sessions after merges: %q (%d lines), want %q", got, s.pipes["s"].lines, want)
	}
	add("h", 0, 30, 1)
	add("h", 10, 40, 1)
	add("h", 20, 50, 1)
	if got, want := starts("h"), "0 30 1 10 40 1 20 50 1"; got != want {
		t.Fatalf("hopping windows: %q, want %q", got, want)
	}
}
