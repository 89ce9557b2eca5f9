package pipeline

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestWindowsByEndMatchesAScan drives windowsByEnd as the coordinator does
// — rounds that add windows and change emitted ones, advances that emit
// what they collect and purge — against what a scan of every window held
// finds (the coordinator's way before the index): the same windows due at
// every advance, and the same windows forgotten. Windows come with
// random starts around the watermark, so that some are new to the
// coordinator behind it (a late event's, for a key without one before),
// and a run may start from a lowered watermark with emitted windows ahead
// of it (a Kafka source's restore).
func TestWindowsByEndMatchesAScan(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 1))
		const size, step = 60, 20 // hopping: ends are starts + 60, starts multiples of 20
		lateness := int64(r.IntN(3)) * step
		wm := int64(r.IntN(10)) * step
		x := newWindowsByEnd()
		held := map[winKey]*winState{}
		if r.IntN(2) == 0 { // restored: emitted windows, some ahead of wm
			for i := range 5 {
				ws := &winState{start: wm + int64(i-3)*step, key: uint32(i), emitted: true, dirty: r.IntN(3) == 0}
				ws.end = ws.start + size
				held[winKey{ws.start, ws.key}] = ws
			}
			for _, ws := range held {
				x.add(ws, wm)
			}
		}
		var due []*winState
		for round := range 60 {
			for range r.IntN(6) {
				start := wm + int64(r.IntN(9)-5)*step
				k := winKey{start, uint32(r.IntN(4))}
				if ws := held[k]; ws != nil {
					if !ws.dirty {
						ws.dirty = true
						x.changed(ws, wm)
					}
					continue
				}
				if start+size+lateness <= wm {
					continue // purged: the coordinator counts it late
				}
				ws := &winState{start: start, end: start + size, key: k.key, dirty: true}
				held[k] = ws
				x.add(ws, wm)
			}
			wm += int64(r.IntN(3)) * step / 2
			var want []*winState
			for _, ws := range held {
				if ws.end <= wm && ws.dirty {
					want = append(want, ws)
				}
			}
			due = x.collect(wm, due[:0])
			sortWins(want)
			sortWins(due)
			if !slices.Equal(due, want) {
				t.Fatalf("seed %d round %d: wm %d: collected %v, a scan finds %v", seed, round, wm, spans(due), spans(want))
			}
			for _, ws := range due {
				ws.emitted, ws.dirty = true, false
			}
			horizon := wm - int64(r.IntN(2))*step
			var gone []*winState
			for _, ws := range held {
				if ws.end+lateness <= horizon && !ws.dirty {
					gone = append(gone, ws)
				}
			}
			var dropped []*winState
			x.purge(horizon, lateness, func(ws *winState) {
				dropped = append(dropped, ws)
				delete(held, winKey{ws.start, ws.key})
			})
			sortWins(gone)
			sortWins(dropped)
			if !slices.Equal(dropped, gone) {
				t.Fatalf("seed %d round %d: horizon %d: purged %v, a scan finds %v", seed, round, horizon, spans(dropped), spans(gone))
			}
		}
	}
}

func sortWins(l []*winState) {
	slices.SortFunc(l, func(a, b *winState) int {
		if c := cmpInt(a.end, b.end); c != 0 {
			return c
		}
		return cmpInt(int64(a.key), int64(b.key))
	})
}

func spans(l []*winState) [][3]int64 {
	var out [][3]int64
	for _, ws := range l {
		out = append(out, [3]int64{ws.start, ws.end, int64(ws.key)})
	}
	return out
}

// TestSessionHeapsMatchAScan drives the coordinator's sessions — fragments
// that start sessions, extend them and merge several, late ones into
// emitted sessions; advances and purges — and checks each advance against
// what a scan of every session held finds (the coordinator's way before
// sessDue and sessDone): the dirty sessions ending by the watermark are
// the ones emitted, the emitted ones ending, plus allowed_lateness, by
// the purge horizon are the ones forgotten, and openWindows counts what
// is held.
func TestSessionHeapsMatchAScan(t *testing.T) {
	p := sessionCountPlan(t, "20ms", "10ms")
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 2))
		kt := newKeyTable()
		for k := range 4 {
			kt.intern(string(rune('a' + k)))
		}
		out, err := newEmitter(nil, p, io.Discard, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := newCoordinator(p, kt, out)
		wm := int64(0)
		for round := range 80 {
			for range r.IntN(5) {
				start := wm + int64(r.IntN(60)-30)
				end := start + 10 + int64(r.IntN(15))
				dead := int64(minWatermark)
				if r.IntN(3) == 0 {
					dead = wm - 20
				}
				c.mergeSession(&sessDelta{key: uint32(r.IntN(4)), start: start, end: end, events: 1, st: c.states.get(), dead: dead})
			}
			wm += int64(r.IntN(12))
			purge := wm - int64(r.IntN(2))*10
			var due, held []*winState
			for _, list := range c.sess {
				for _, ws := range list {
					held = append(held, ws)
					if ws.dirty && ws.end <= wm {
						due = append(due, ws)
					}
				}
			}
			if n := c.openWindows(); n != len(held) {
				t.Fatalf("seed %d round %d: openWindows %d, %d held", seed, round, n, len(held))
			}
			was := map[*winState]bool{}
			for _, ws := range held {
				was[ws] = ws.dirty
			}
			if err := c.advance(wm, purge, purge); err != nil {
				t.Fatal(err)
			}
			emitted := map[*winState]bool{}
			for _, ws := range due {
				emitted[ws] = true
			}
			kept := map[*winState]bool{}
			for _, list := range c.sess {
				for _, ws := range list {
					kept[ws] = true
				}
			}
			for _, ws := range held {
				switch {
				case emitted[ws] && (ws.dirty || !ws.emitted):
					t.Fatalf("seed %d round %d: session %d..%d of key %d due at watermark %d, not emitted", seed, round, ws.start, ws.end, ws.key, wm)
				case !emitted[ws] && was[ws] != ws.dirty:
					t.Fatalf("seed %d round %d: session %d..%d of key %d emitted at watermark %d", seed, round, ws.start, ws.end, ws.key, wm)
				}
				forget := !ws.dirty && ws.end+p.lateness <= c.purged
				if forget == kept[ws] {
					t.Fatalf("seed %d round %d: session %d..%d of key %d (dirty %v): kept %v after a purge to %d", seed, round, ws.start, ws.end, ws.key, ws.dirty, kept[ws], c.purged)
				}
			}
		}
	}
}

// TestSessionDueHoldsSessionsNotRounds: the coordinator's heap of
// sessions to emit holds one entry per session, not one per round that
// moved its end: a key with events in every round of a following
// pipeline (rounds every few ms, gap 30 min) would otherwise leave an
// entry a round until the watermark passed them. The session is emitted
// once, at its last end.
func TestSessionDueHoldsSessionsNotRounds(t *testing.T) {
	p := sessionCountPlan(t, "1m", "30m")
	kt := newKeyTable()
	kt.intern("a")
	var out bytes.Buffer
	em, err := newEmitter(nil, p, &out, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newCoordinator(p, kt, em)
	const gap = 30 * 60_000
	for i := range int64(10_000) {
		c.mergeSession(&sessDelta{key: 0, start: i * 10, end: i*10 + gap, events: 1, st: c.states.get(), dead: minWatermark})
		if err := c.advance(i*10-1, minWatermark, minWatermark); err != nil {
			t.Fatal(err)
		}
		if len(c.sessDue) > 2 {
			t.Fatalf("round %d: %d entries to emit one session", i, len(c.sessDue))
		}
	}
	last := int64(99_990 + gap)
	if err := c.advance(last-1, minWatermark, minWatermark); err != nil || out.Len() != 0 {
		t.Fatalf("emitted before its end: %v %q", err, out.String())
	}
	if err := c.advance(last, minWatermark, minWatermark); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), `"type":"window"`); n != 1 || !strings.Contains(out.String(), `"window_end":"1970-01-01T00:31:39.99Z"`) {
		t.Fatalf("%d windows emitted at the session's end: %s", n, out.String())
	}
}

// sessionCountPlan is a session pipeline counting events, its allowed
// lateness and gap as given.
func sessionCountPlan(t testing.TB, lateness, gap string) *plan {
	t.Helper()
	return testPlan(t, fmt.Sprintf(`pipelines:
  - name: s
    source: {topic: events}
    time: {field: ts, unit: ms, allowed_lateness: %s}
    window: {type: session, gap: %s}
    metrics:
      - {name: n, agg: count}
`, lateness, gap))
}
