package pipeline

import (
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fastflow/fastflow/agg"
)

// winState is a window of a key as the coordinator holds it: the merged
// aggregate of every worker's contributions.
type winState struct {
	start, end int64
	key        uint32
	st         *agg.State
	emitted    bool // revision 0 went out
	revision   int  // of the last emission
	dirty      bool // changed since its last emission
	gone       bool // a session merged into another, or forgotten: its heap entries are stale
	// A session's entry in sessDue, if it has one (queued): the end it had
	// when queued.
	queued bool
	due    int64
}

// coordinator merges the workers' rounds and emits results. It runs on one
// goroutine; workers never wait for it beyond their rings' depth.
type coordinator struct {
	p        *plan
	sourceID string // the source topic's ID, saved in checkpoints
	keys     *keyTable
	wins     map[winKey]*winState
	byEnd    windowsByEnd  // wins by end
	sess     [][]*winState // by key ID: its sessions, sorted by start (sessionsOf)
	parts    map[int32]*partReport

	// The sessions in sess by end: the dirty ones, to emit, and the
	// emitted ones, to forget (plus allowed_lateness); and how many sess
	// holds. Sessions change their ends as they merge, and vanish into
	// the sessions they merge with, so entries are not updated: a dirty
	// session has one entry in sessDue, at the end it had when queued
	// (winState.due), which, reached before the session's end, queues it
	// again at that end - a session extended by every round of a
	// following pipeline would otherwise leave an entry a round until the
	// watermark passed them. An emitted session gets an entry in sessDone
	// when emitted. An entry whose session has moved on is stale and
	// skipped as it comes out: in sessDue, the session is gone (merged
	// into another) or queued at another end; in sessDone, it is gone,
	// dirty again, or at another end.
	sessDue, sessDone minHeap[*winState]
	nSess             int

	// Session pipelines: by key ID, each partition's session spans of the
	// key as its worker held them after the latest merged round
	// (spanReport), for checkpoints; a key's events mostly come from one
	// partition. partSpansSaved: restored from a checkpoint that had them.
	keySpans       [][]partSpans
	partSpansSaved bool
	wm             int64 // pipeline watermark: monotonic
	// Windows ending (plus allowed_lateness) at or before expired are gone
	// as far as results go: no session merges with one (Flink clears a
	// window's state there). They leave memory once every worker judges
	// lateness by a horizon past them (worker.horizon), up to purged, so
	// that none adds to a window no longer there; horizon is where the
	// coordinator publishes expired to the workers. All monotonic; purged
	// <= expired <= wm.
	expired int64
	purged  int64
	horizon atomic.Int64
	started int64 // unix ns the run started: a partition's idleness counts from here until its first event
	states  statePool
	alerts  alertStates
	out     *emitter
	now     func() time.Time
	// contributions to windows already purged: none since workers judge
	// lateness by the expired horizon too; kept as a count rather than
	// lost if one came
	latePurged int64
	skipped    func() int64 // records retention deleted before the workers read them

	// Forgetting keys (keys.go): the sweep whose keys wait for release
	// (its epoch; 0: none), the table's size that starts the next sweep,
	// and the keys in use as usedKeys found them.
	sweepEpoch uint64
	forgetMin  int // forgetMinKeys when the coordinator was made
	nextSweep  int
	used       []uint64
	alertHeld  []int32 // by key ID: alert states that keep it (hold)
	forgotten  int64   // keys released, in all

	due  []*winState
	keyd []keyedWindow // due, with their keys, in emission order
	vals []agg.Value
	line []byte
}

// forgetMinKeys is the key table's size below which a pipeline does not
// sweep: 64 K keys hold ~30 MB (~500 bytes a key measured with two
// workers and two alert rules: the table, the workers' caches, the alert
// states). Tests set 0: a sweep after every round.
var forgetMinKeys = 1 << 16

// sweepAt is the table size at which the next sweep starts: twice what it
// holds now, and at least forgetMin.
func (c *coordinator) sweepAt() int {
	if c.forgetMin == 0 {
		return 0
	}
	return max(c.forgetMin, 2*c.keys.size())
}

func newCoordinator(p *plan, kt *keyTable, out *emitter) *coordinator {
	return &coordinator{p: p, keys: kt, wins: map[winKey]*winState{}, byEnd: newWindowsByEnd(),
		parts: map[int32]*partReport{}, wm: minWatermark, states: statePool{layout: p.layout}, alerts: make(alertStates, len(p.alerts)), out: out, now: time.Now,
		forgetMin: forgetMinKeys, nextSweep: forgetMinKeys, expired: minWatermark, purged: minWatermark, started: time.Now().UnixNano()}
}

func (c *coordinator) drop(ws *winState) { c.states.put(ws.st) }

// indexRestored indexes the windows a checkpoint restored (c.byEnd), at
// the watermark the coordinator starts from: restore leaves that to its
// caller, which may lower it (a Kafka source restores one snapshot per
// partition, and starts from the lowest).
func (c *coordinator) indexRestored() {
	for _, ws := range c.wins {
		c.byEnd.add(ws, c.wm)
	}
	for _, list := range c.sess {
		for _, ws := range list {
			c.indexSession(ws)
		}
		c.nSess += len(list)
	}
}

// queue files dirty session ws in sessDue, at its end.
func (c *coordinator) queue(ws *winState) {
	ws.queued, ws.due = true, ws.end
	c.sessDue.push(ws.end, ws)
}

// indexSession files session ws in the heap its state calls for: dirty,
// to emit; emitted and unchanged since, to forget.
func (c *coordinator) indexSession(ws *winState) {
	if ws.dirty {
		c.queue(ws)
	} else {
		c.sessDone.push(ws.end, ws)
	}
}

// apply merges one worker's round.
func (c *coordinator) apply(m *roundMsg) {
	// A partition's idleness counts from the round that brought its last
	// event here, not from when its worker read it: a backlog's rounds
	// come one per merge, and a partition read to its end minutes before
	// its last round is merged is not idle (the watermark stopped where
	// it was when it was found so).
	now := c.now().UnixNano()
	for i := range m.parts {
		r := m.parts[i]
		switch old := c.parts[r.id]; {
		case old != nil && old.events == r.events:
			r.lastRecord = old.lastRecord
		case old != nil || r.events > 0:
			r.lastRecord = now
		}
		c.parts[r.id] = &r
	}
	lateness := c.p.lateness
	for i := range m.wins {
		d := &m.wins[i]
		k := winKey{d.start, d.key}
		ws := c.wins[k]
		if ws == nil {
			end := c.p.windows.End(d.start)
			if end+lateness <= c.purged {
				c.latePurged += d.events
				continue
			}
			ws = &winState{start: d.start, end: end, key: d.key, st: c.states.get(), dirty: true}
			c.wins[k] = ws
			c.byEnd.add(ws, c.wm)
		} else if !ws.dirty {
			ws.dirty = true
			c.byEnd.changed(ws, c.wm)
		}
		ws.st.Merge(d.st, &c.states.pages)
	}
	for i := range m.sess {
		c.mergeSession(&m.sess[i])
	}
	for _, r := range m.spans {
		c.setSpans(r.key, r.part, r.spans)
	}
	for i := range m.side {
		c.out.side(&m.side[i])
	}
}

// partSpans are a key's session spans on one partition.
type partSpans struct {
	part  int32
	spans []span
}

// setSpans makes spans (copied: a round message's memory is reused) key's
// spans on partition part; none removes them.
func (c *coordinator) setSpans(key uint32, part int32, spans []span) {
	if int(key) >= len(c.keySpans) && len(spans) == 0 {
		return
	}
	c.keySpans = byID(c.keySpans, key)
	list := c.keySpans[key]
	i := slices.IndexFunc(list, func(ps partSpans) bool { return ps.part == part })
	switch {
	case len(spans) == 0 && i >= 0:
		if list = slices.Delete(list, i, i+1); len(list) == 0 {
			list = nil // a key gone quiet holds no memory
		}
	case len(spans) == 0:
	case i >= 0:
		list[i].spans = append(list[i].spans[:0], spans...)
	default:
		list = append(list, partSpans{part, slices.Clone(spans)})
	}
	c.keySpans[key] = list
}

// mergeSession merges a fragment into its key's sessions: every session it
// meets (Flink's intersects: start <= other.end && end >= other.start)
// becomes one.
func (c *coordinator) mergeSession(d *sessDelta) {
	list := c.sessionsOf(d.key)
	var into *winState
	kept := list[:0]
	for _, ws := range list {
		if ws.start <= d.end && ws.end >= d.start && ws.end+c.p.lateness > c.expired && ws.end > d.dead {
			if into == nil {
				into = ws
			} else {
				into.st.Merge(ws.st, &c.states.pages)
				into.start, into.end = min(into.start, ws.start), max(into.end, ws.end)
				into.emitted = into.emitted || ws.emitted
				into.revision = max(into.revision, ws.revision)
				c.drop(ws)
				ws.gone = true
				c.nSess--
				continue
			}
		}
		kept = append(kept, ws)
	}
	if into == nil {
		// A fragment that meets no session still there is purged if it
		// ends too early itself; one that joins a session is judged by it
		// (open, in the worker).
		if d.end+c.p.lateness <= c.purged {
			c.latePurged += d.events
			return
		}
		into = &winState{start: d.start, end: d.end, key: d.key, st: c.states.get()}
		kept = append(kept, into)
		c.nSess++
	}
	into.st.Merge(d.st, &c.states.pages)
	into.start, into.end = min(into.start, d.start), max(into.end, d.end)
	into.dirty = true
	if !into.queued { // new, or emitted: queued to emit; queued, its entry moves on when reached
		c.queue(into)
	}
	sortSessions(kept)
	c.setSessions(d.key, kept)
}

// sessionsOf returns key's sessions, sorted by start.
func (c *coordinator) sessionsOf(key uint32) []*winState {
	if int(key) < len(c.sess) {
		return c.sess[key]
	}
	return nil
}

// setSessions makes list key's sessions (by key ID, byID: a pipeline of
// many keys looks a key's sessions up for every fragment a round brings).
func (c *coordinator) setSessions(key uint32, list []*winState) {
	c.sess = byID(c.sess, key)
	c.sess[key] = list
}

func sortSessions(list []*winState) {
	slices.SortFunc(list, func(a, b *winState) int { return cmpInt(a.start, b.start) })
}

// watermark returns the pipeline watermark, which emits windows, and the
// horizon at or before which windows expire.
//
// The watermark is the minimum over the active partitions: idle ones
// (following: no event for idle_timeout) and exhausted ones (until-end:
// read to their end) stop holding it back. Following, a partition with no
// event yet does not hold it back either, so that a topic with partitions
// no producer writes has results at once (Flink would wait for
// idleness). Until-end, it does until it is exhausted: its records are
// there to be read, and may all be rejected ones for a few rounds. With
// none active the watermark stays where it is, or, all exhausted, goes to
// +infinity.
//
// The horizon is the watermark, held back by every partition that is
// neither idle nor exhausted, one with no event yet too (its watermark is
// -infinity) until it has been idle_timeout without one since the run
// started. SPEC judges lateness per partition: a partition whose producer
// writes after another's, after the windows the other closed were
// emitted, has its events accepted by its own watermark, and they must
// find those windows still there - to re-emit them with revision + 1, or
// emit a key's window for the first time. Expired, they were dropped and
// counted as late.
func (c *coordinator) watermark(follow bool) (wm, horizon int64) {
	wm, horizon = math.MaxInt64, math.MaxInt64
	active, exhausted := 0, 0
	now := c.now().UnixNano()
	for _, r := range c.parts {
		if r.exhausted {
			exhausted++
			continue
		}
		if follow {
			since := r.lastRecord
			if r.wm == minWatermark {
				since = max(since, c.started)
			}
			if now-since > int64(c.p.idle) {
				continue
			}
		}
		horizon = min(horizon, r.wm)
		if follow && r.wm == minWatermark {
			continue
		}
		active++
		wm = min(wm, r.wm)
	}
	switch {
	case active > 0:
		wm = max(c.wm, wm)
	case !follow && exhausted == len(c.parts):
		wm = math.MaxInt64
	default:
		wm = c.wm
	}
	return wm, max(c.expired, min(wm, horizon))
}

// advance moves the watermark and emits what it closes: new windows
// (revision 0) and windows changed by late events since their emission
// (revision + 1), in order of window end, start and key. Then the windows
// that end (plus allowed_lateness) at or before horizon expire, and those
// at or before safe (coordinate: the horizon every worker judges by) leave
// memory.
func (c *coordinator) advance(wm, horizon, safe int64) error {
	c.wm = wm
	c.due = c.byEnd.collect(wm, c.due[:0])
	for {
		e, ok := c.sessDue.top()
		if !ok || e.at > wm {
			break
		}
		c.sessDue.pop()
		ws := e.v
		if ws.gone || !ws.queued || ws.due != e.at {
			continue // stale
		}
		ws.queued = false
		switch {
		case ws.end > e.at:
			c.queue(ws) // extended since queued: due at its end (this loop may take it yet)
		case ws.dirty:
			c.due = append(c.due, ws)
		}
	}
	// Each key's text looked up once, not per comparison.
	c.keyd = c.keyd[:0]
	for _, ws := range c.due {
		c.keyd = append(c.keyd, keyedWindow{ws, c.keys.key(ws.key)})
	}
	clear(c.due)
	slices.SortFunc(c.keyd, func(a, b keyedWindow) int {
		if x := cmpInt(a.ws.end, b.ws.end); x != 0 {
			return x
		}
		if x := cmpInt(a.ws.start, b.ws.start); x != 0 {
			return x
		}
		return strings.Compare(a.text, b.text)
	})
	for _, kw := range c.keyd {
		ws := kw.ws
		if ws.emitted {
			ws.revision++
		}
		ws.emitted, ws.dirty = true, false
		if c.p.windows.Kind == agg.Session {
			c.sessDone.push(ws.end, ws)
		}
		if err := c.emit(ws, kw.text); err != nil {
			return err
		}
	}
	clear(c.keyd)
	c.expired = max(c.expired, horizon)
	if p := min(c.expired, safe); p > c.purged {
		c.purged = p
		c.purge(p)
	}
	return c.out.flush()
}

// keyedWindow is a window due, with its key's text.
type keyedWindow struct {
	ws   *winState
	text string
}

func (c *coordinator) emit(ws *winState, key string) error {
	seconds := float64(ws.end-ws.start) / 1000
	c.vals = ws.st.Values(c.p.layout, seconds, c.vals)
	wl := windowLine{start: ws.start, end: ws.end, key: key, revision: ws.revision, values: c.vals}
	c.line = c.p.appendWindow(c.line[:0], &wl)
	src := int32(noPartition)
	if c.out.bySource {
		src = c.keys.partitionOf(key)
	}
	if err := c.out.window(c.line, &wl, src); err != nil {
		return err
	}
	for i := range c.p.alerts {
		if ev, ok := c.evaluate(i, ws, key, c.vals); ok {
			c.line = c.p.appendAlert(c.line[:0], &ev)
			if err := c.out.alert(c.line, &ev, src); err != nil {
				return err
			}
		}
	}
	return nil
}

// purge forgets windows whose end plus the allowed lateness the watermark
// has reached: every partition refuses their events from now on.
func (c *coordinator) purge(wm int64) {
	c.byEnd.purge(wm, c.p.lateness, func(ws *winState) {
		c.drop(ws)
		delete(c.wins, winKey{ws.start, ws.key})
	})
	for {
		e, ok := c.sessDone.top()
		if !ok || e.at+c.p.lateness > wm {
			break
		}
		c.sessDone.pop()
		ws := e.v
		if ws.gone || ws.dirty || ws.end != e.at {
			continue // merged, or changed since: emitted again, it has another entry
		}
		list := c.sess[ws.key]
		i := slices.Index(list, ws)
		if list = slices.Delete(list, i, i+1); len(list) == 0 {
			list = nil // a key gone quiet holds no memory
		}
		c.sess[ws.key] = list
		c.drop(ws)
		ws.gone = true
		c.nSess--
	}
}

// stats sums the partitions' counters.
func (c *coordinator) stats() Stats {
	var s Stats
	for _, r := range c.parts {
		s.Records += r.records
		s.Events += r.events
		s.LateDropped += r.lateDropped
		for i, n := range r.rejected {
			s.Rejected[i] += n
		}
	}
	s.LateDropped += c.latePurged
	s.SinkDropped = c.out.dropped()
	if c.skipped != nil {
		s.Skipped = c.skipped()
	}
	return s
}

// openWindows is the number of windows held, for metrics and tests.
func (c *coordinator) openWindows() int {
	return len(c.wins) + c.nSess
}

// forgetKeys runs after each round (Forgetting keys, keys.go): it releases
// the pending sweep's keys once every worker has reported its epoch (seen
// is the lowest epoch the workers' latest rounds carried), or sweeps when
// the table has grown to nextSweep keys: twice what it held after the
// last sweep, so that the sweeps' cost stays in proportion to the keys.
func (c *coordinator) forgetKeys(seen uint64) {
	switch {
	case c.sweepEpoch != 0:
		if seen < c.sweepEpoch {
			return
		}
		freed := c.keys.release(c.usedKeys())
		for _, id := range freed {
			c.alerts.forget(id)
		}
		c.forgotten += int64(len(freed))
		c.sweepEpoch = 0
		c.p.logger().Info("group keys forgotten", "pipeline", c.p.cfg.Name, "forgotten", len(freed), "held", c.keys.size())
		c.nextSweep = c.sweepAt()
	case c.keys.size() >= c.nextSweep:
		if c.keys.sweep(c.usedKeys()) > 0 {
			c.sweepEpoch = c.keys.epoch.Load()
		} else {
			c.nextSweep = c.sweepAt()
		}
	}
}

// usedKeys returns whether the coordinator holds anything of key id: an
// open window or session, a partition's session span, or an alert state
// that differs from a new key's (firing, or its latest window meeting the
// condition: the next may complete its streak). IDs taken after the call
// count as used.
func (c *coordinator) usedKeys() func(id uint32) bool {
	n := c.keys.idSpace()
	c.used = slices.Grow(c.used[:0], (n+63)/64)[:(n+63)/64]
	clear(c.used)
	mark := func(id uint32) {
		if int(id) < n {
			c.used[id/64] |= 1 << (id % 64)
		}
	}
	for k := range c.wins {
		mark(k.key)
	}
	for id, list := range c.sess {
		if len(list) > 0 {
			mark(uint32(id))
		}
	}
	for id, list := range c.keySpans {
		if len(list) > 0 {
			mark(uint32(id))
		}
	}
	for id, n := range c.alertHeld {
		if n > 0 {
			mark(uint32(id))
		}
	}
	return func(id uint32) bool {
		return int(id) >= n || c.used[id/64]&(1<<(id%64)) != 0
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
