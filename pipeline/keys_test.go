package pipeline

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/producer"
)

// TestKeyTableForget walks the two steps of forgetting keys: a sweep
// marks unused keys dying, a cache that syncs drops them, a key met again
// is revived, and release frees only the keys still dying and unused,
// whose IDs new keys then take.
func TestKeyTableForget(t *testing.T) {
	kt := newKeyTable()
	c := keyCache{kt: kt, ids: map[string]cachedKey{}, seed: maphash.MakeSeed()}
	a, b, d := c.id([]byte(`"a"`), 0), c.id([]byte(`"b"`), 0), c.id([]byte(`"d"`), 0)
	if kt.size() != 3 {
		t.Fatalf("size %d", kt.size())
	}
	if e := c.sync(); e != 0 {
		t.Fatalf("epoch %d before any sweep", e)
	}
	if n := kt.sweep(func(id uint32) bool { return id == b }); n != 2 {
		t.Fatalf("sweep marked %d, want a and d", n)
	}
	if e := c.sync(); e != 1 {
		t.Fatalf("epoch %d after the sweep", e)
	}
	if _, ok := c.ids[`"a"`]; ok || len(c.ids) != 1 {
		t.Fatalf("cache after sync: %v", c.ids)
	}
	// a is met again: revived, same ID.
	if id := c.id([]byte(`"a"`), 0); id != a {
		t.Fatalf("revived a has ID %d, want %d", id, a)
	}
	freed := kt.release(func(uint32) bool { return false })
	if len(freed) != 1 || freed[0] != d {
		t.Fatalf("released %v, want only d (%d)", freed, d)
	}
	if kt.size() != 2 || kt.key(a) != `"a"` {
		t.Fatalf("size %d, a=%q", kt.size(), kt.key(a))
	}
	// A new key takes d's ID; d itself comes back as a new key.
	if id := c.id([]byte(`"e"`), 0); id != d || kt.key(id) != `"e"` {
		t.Fatalf("new key e: ID %d (%q), want the freed %d", id, kt.key(id), d)
	}
	if id := c.id([]byte(`"d"`), 0); id != 3 {
		t.Fatalf("d again: ID %d, want the new 3", id)
	}
	// Release skips a dying key something came to use since the sweep.
	kt.sweep(func(id uint32) bool { return id != b })
	c.sync()
	if freed := kt.release(func(uint32) bool { return true }); len(freed) != 0 {
		t.Fatalf("released %v, all in use", freed)
	}
	if kt.size() != 4 {
		t.Fatalf("size %d", kt.size())
	}
}

// TestKeyTableSweepInChunks: a sweep over more than one chunk marks every
// unused key, while another goroutine interns new keys (which take IDs
// past the sweep's range, or freed ones) and meets old ones again (which
// revives them) between the chunks; run with -race.
func TestKeyTableSweepInChunks(t *testing.T) {
	kt := newKeyTable()
	const n = 3*sweepChunk + 100
	for i := range n {
		kt.intern(fmt.Sprintf("k%d", i))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			kt.intern(fmt.Sprintf("new%d", i))
			kt.intern(fmt.Sprintf("k%d", 2*i)) // used anyway: stays
		}
	}()
	// Odd IDs unused (to the coordinator), even ones used.
	marked := kt.sweep(func(id uint32) bool { return id%2 == 0 || id >= n })
	<-done
	if marked != n/2 {
		t.Fatalf("sweep marked %d of %d keys, want the %d odd ones", marked, n, n/2)
	}
	freed := kt.release(func(id uint32) bool { return id%2 == 0 || id >= n })
	if len(freed) != n/2 || kt.size() != n-n/2+2000 {
		t.Fatalf("released %d, %d held; want %d released, %d held", len(freed), kt.size(), n/2, n-n/2+2000)
	}
	for _, id := range freed {
		if id%2 == 0 || id >= n {
			t.Fatalf("released ID %d, which was in use", id)
		}
	}
}

// forgetYAML: every kind of window, lateness, and alerts whose `for`
// spans windows, so that keys hold alert states when their windows are
// gone: a key quiet while its alert fires, or one window short of firing,
// must not be forgotten.
const forgetYAML = `pipelines:
  - name: users
    source: {topic: events, start: earliest}
    time: {field: ts, unit: ms, max_out_of_order: 300ms, allowed_lateness: 2s, idle_timeout: 1s}
    group_by: [user]
    window: %s
    metrics:
      - {name: n, agg: count}
      - {name: errors, agg: count, where: 'status == "error"'}
      - {name: p90, agg: percentile, field: rt, q: 0.9}
      - {name: total, agg: sum, field: rt}
    alerts:
      - {name: erroring, when: 'errors >= 1', for: 2}
      - {name: slow, when: 'p90 > 280'}
`

// churnEvents: user keys that come and go — most for a few windows, some
// back long after (forgotten by then, or kept by an alert), errors in
// streaks, and late events of all ages.
func churnEvents(n int) [][]byte {
	rng := rand.New(rand.NewPCG(3, 4))
	t := int64(1795341600000)
	out := make([][]byte, n)
	for i := range out {
		t += rng.Int64N(40)
		user := i / 40
		switch r := rng.IntN(30); {
		case r == 0 && user > 100:
			user -= 50 + rng.IntN(50) // back after a long while
		case r == 1:
			user = 7 // one key throughout
		}
		status := "ok"
		if (user/3)%4 == 0 || rng.IntN(100) == 0 {
			status = "error"
		}
		ts := t
		if rng.IntN(25) == 0 {
			ts -= rng.Int64N(4000) // late, sometimes too late
		}
		out[i] = fmt.Appendf(nil, `{"ts":%d,"user":"u%d","status":%q,"rt":%.2f}`, ts, user, status, rng.Float64()*300)
	}
	return out
}

func churnLog(tb testing.TB, evs [][]byte, parts int) *log.Log {
	l, tp := testTopic(tb, parts)
	pr, _ := producer.New(tp, producer.Options{Acks: log.AcksLeader, Partition: -1})
	for _, e := range evs {
		if err := pr.Add(nil, e, 0); err != nil {
			tb.Fatal(err)
		}
	}
	if err := pr.Close(); err != nil {
		tb.Fatal(err)
	}
	return l
}

// runCounted runs f over l until the end and returns its output and last
// snapshot.
func runCounted(t *testing.T, l *log.Log, f *File, workers int) (string, *Snapshot) {
	t.Helper()
	var out countingWriter
	r, err := Start(context.Background(), l, f, Options{UntilEnd: true, Workers: workers, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Wait(); err != nil {
		t.Fatal(err)
	}
	return out.buf.String(), r.Pipelines()[0].Snapshot()
}

// TestForgettingKeysKeepsResults: a run that sweeps after every round
// prints what a run that never forgets prints, byte for byte, for every
// window kind, with 1 and 2 workers; and it does forget.
func TestForgettingKeysKeepsResults(t *testing.T) {
	defer func(n int) { forgetMinKeys = n }(forgetMinKeys)
	const n = 12000
	evs := churnEvents(n)
	l := churnLog(t, evs, 3)
	defer l.Close()
	for _, win := range []string{"{type: tumbling, size: 1s}", "{type: hopping, size: 2s, advance: 500ms}", "{type: session, gap: 400ms}"} {
		f, err := Parse("forget.yaml", []byte(fmt.Sprintf(forgetYAML, win)))
		if err != nil {
			t.Fatal(err)
		}
		forgetMinKeys = math.MaxInt
		want, snap := runCounted(t, l, f, 1)
		if snap.KeysForgotten != 0 {
			t.Fatalf("%s: forgot %d keys with sweeps off", win, snap.KeysForgotten)
		}
		if !strings.Contains(want, `"state":"firing"`) || !strings.Contains(want, `"state":"resolved"`) || !strings.Contains(want, `"revision":1`) {
			t.Fatalf("%s: the events should fire and resolve alerts and revise windows", win)
		}
		forgetMinKeys = 0 // a sweep after every round
		for _, workers := range []int{1, 2} {
			got, snap := runCounted(t, l, f, workers)
			if got != want {
				t.Fatalf("%s, %d workers: output differs when forgetting keys:\n%s", win, workers, firstDiff(strings.Split(got, "\n"), strings.Split(want, "\n")))
			}
			// 300 users pass through. A quarter keep erroring to the end (their
			// alert fires on), sweeps come as the table doubles, and how many
			// were released by the end depends on how far the workers ran
			// ahead of the coordinator: some.
			if snap.KeysForgotten == 0 {
				t.Fatalf("%s, %d workers: forgot %d keys", win, workers, snap.KeysForgotten)
			}
			t.Logf("%s, %d workers: %d keys forgotten, %d held at the end", win, workers, snap.KeysForgotten, snap.Keys)
		}
	}
}

// TestFollowingRunForgetsKeys: a following run over keys that keep
// changing holds a bounded number of them, and still emits every window.
func TestFollowingRunForgetsKeys(t *testing.T) {
	defer func(n int) { forgetMinKeys = n }(forgetMinKeys)
	forgetMinKeys = 64
	l, tp := testTopic(t, 2)
	defer l.Close()
	f, err := Parse("forget.yaml", []byte(fmt.Sprintf(forgetYAML, "{type: tumbling, size: 1s}")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out countingWriter
	r, err := Start(ctx, l, f, Options{Stdout: &out, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	pr, _ := producer.New(tp, producer.Options{Acks: log.AcksLeader, Partition: -1})
	const users, perUser = 4000, 3
	t0 := int64(1795341600000)
	maxKeys := 0
	for u := range users {
		for i := range perUser {
			// Each user lives for one second of event time, ten users a second.
			ts := t0 + int64(u)*100 + int64(i)*30
			pr.Add(nil, fmt.Appendf(nil, `{"ts":%d,"user":"u%d","status":"ok","rt":1}`, ts, u), 0)
		}
		if u%200 == 199 {
			pr.Flush()
			if s := r.Pipelines()[0].Snapshot(); s != nil {
				maxKeys = max(maxKeys, s.Keys)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	pr.Close()
	// Wait for most users' windows: those of the last batch stay open, as
	// the watermark stays where it was once every partition is idle.
	deadline := time.Now().Add(60 * time.Second)
	for {
		s := r.Pipelines()[0].Snapshot()
		if s != nil {
			maxKeys = max(maxKeys, s.Keys)
		}
		out.mu.Lock()
		done := strings.Count(out.buf.String(), `"type":"window"`) >= users-300
		out.mu.Unlock()
		if done && s.KeysForgotten > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s: snapshot %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Stop()
	if err := r.Wait(); err != nil {
		t.Fatal(err)
	}
	s := r.Pipelines()[0].Snapshot()
	t.Logf("%d users: at most %d keys held, %d forgotten", users, maxKeys, s.KeysForgotten)
	// Sweeps start at 64 keys and then at twice what the last one kept,
	// which includes the keys the workers took since it (they run ahead):
	// how many are held at once depends on the timing, never all.
	if s.KeysForgotten < users/2 || maxKeys > users/2 {
		t.Fatalf("%d users: at most %d keys held, %d forgotten", users, maxKeys, s.KeysForgotten)
	}
}

// BenchmarkKeyTableSweep: a sweep over 65,536 keys, half of them in use,
// in ns per key: a chunk of sweepChunk keys holds the table's lock for
// sweepChunk times that.
func BenchmarkKeyTableSweep(b *testing.B) {
	kt := newKeyTable()
	const n = 1 << 16
	for i := range n {
		kt.intern(fmt.Sprintf("user-%d", i))
	}
	used := func(id uint32) bool { return id%2 == 0 }
	b.ResetTimer()
	for range b.N {
		kt.sweep(used)
		for _, id := range kt.dyingList {
			kt.dying[id] = false
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/key")
}
