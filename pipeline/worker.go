package pipeline

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/cpu"

	"github.com/fastflow/fastflow/agg"
	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/pipeline/internal/ring"
)

// roundRecords bounds a partition's share of one round.
const roundRecords = 4096

// minWatermark is the watermark of a partition that has seen no event.
const minWatermark = math.MinInt64

// winKey identifies a tumbling or hopping window of a key.
type winKey struct {
	start int64
	key   uint32
}

// roundMsg is what a worker reports after a round: per partition, its
// watermark, position and counters; and the partial aggregates of the
// windows the round touched, which the coordinator merges. The
// coordinator sends the message back for reuse.
type roundMsg struct {
	worker int
	round  uint64
	// keyEpoch is the key table's sweep epoch whose dying keys the worker
	// had dropped from its cache when the round began.
	keyEpoch uint64
	// horizon is the purge horizon the round's lateness was judged by:
	// the coordinator forgets no window past it until every worker has.
	horizon int64
	parts   []partReport
	wins    []winDelta
	sess    []sessDelta
	spans   []spanReport // session pipelines: the spans of keys a partition's round changed
	spanBuf []span       // their spans' memory
	side    []sideRecord
	buf     []byte // side records' bytes
}

// spanReport is a key's session spans on one partition after a round, as
// the partition's sessionEnds holds them (none: forgotten). The
// coordinator keeps the latest of each, so that a checkpoint restores the
// workers' session ends exactly and a restarted run ends its rounds where
// an uninterrupted one does.
type spanReport struct {
	part  int32
	key   uint32
	spans []span
}

type winDelta struct {
	start  int64
	key    uint32
	prev   int32 // the key's window added to the round before this one, or -1 (worker.observe)
	events int64
	st     *agg.State
}

type sessDelta struct {
	key        uint32
	start, end int64
	events     int64
	st         *agg.State
	// dead: sessions ending at or before it are too late for the
	// fragment's partition to join (the watermark before the fragment's
	// first event less the allowed lateness; minWatermark: none). The
	// coordinator's own horizon is the minimum over partitions, behind
	// this one's: lateness is judged per partition.
	dead int64
}

// sideRecord is a record copied to the dead-letter or late topic.
type sideRecord struct {
	late  bool
	part  int32 // the source partition
	key   []byte
	value []byte
}

// partReport is a partition's state after a round; counters are totals.
type partReport struct {
	id          int32
	wm, maxT    int64
	next        int64 // offset after the last record processed
	exhausted   bool  // until-end: everything up to the end is processed
	lastRecord  int64 // unix ns (processing time) the coordinator took the last event, for idleness (apply)
	records     int64
	events      int64
	lateDropped int64
	rejected    [numReasons]int64
}

// partState is a partition as its worker processes it.
type partState struct {
	_ cpu.CacheLinePad // written per event by its worker: no line shared with another partition's
	partReport
	feed     *feed
	cur      *batch
	pos      int
	sessions sessionEnds
	// A local feed's records, read by the worker itself into readBuf: they
	// point into the reader's buffer until the next read. readEnd is the
	// reader's offset after them (past gaps).
	read    []log.Record
	readBuf []log.Record
	readEnd int64
	_       cpu.CacheLinePad
}

// sessionEnds tracks, for session windows, the sessions of each key as
// this partition sees them — disjoint intervals, merged by the rule the
// coordinator uses — and their ends in a min-heap, so that the worker
// knows when its watermark closes one. A key may have several sessions
// open at once (an out-of-order event starts one before the current).
type sessionEnds struct {
	spans    map[uint32][]span
	heap     minHeap[sessionEnd] // at: when the watermark reaching it changes the session
	lateness int64
	// touched are the keys whose spans changed since the last report,
	// each as often as it changed (report sorts them out): a map cleared
	// every round costs its capacity, which grows with the keys of the
	// busiest round.
	touched []uint32
}

// span is a session as a partition sees it; closed once the watermark
// passed its end (its forget is pending, not its close). An open span has
// one close pending in the heap, at due: the end it had when the close
// was scheduled. Events that extend it do not schedule another (a key's
// events would otherwise leave one heap entry each until the watermark
// passes them: gap x the event rate); the close, reached, schedules again
// at the span's end if that has moved on.
type span struct {
	start, end int64
	due        int64
	closed     bool
}

// sessionEnd is a moment the watermark changes a session: at its end it
// closes (the coordinator emits it), at its end plus the allowed lateness
// the coordinator forgets it (a later event starts a new session).
type sessionEnd struct {
	end    int64
	key    uint32
	forget bool
}

// open adds the window [t, end) of an event of key. It merges with the
// key's sessions it meets that are still there — ending after dead, the
// watermark before the event less the allowed lateness; the others are
// gone for the coordinator too, and wait for their forget — and returns
// the merged session's end. When that end is at or before dead as well,
// the event is too late: nothing changes, and ok is false. So lateness is
// judged by the session an event joins, as Flink and Kafka Streams judge
// it: an out-of-order event inside a session that is still open is not
// late because its own window [t, t+gap) ends before the watermark.
func (s *sessionEnds) open(key uint32, t, end, dead int64) (merged int64, ok bool) {
	joins := func(sp span) bool { return sp.end > dead && sp.start <= end && sp.end >= t }
	spans := s.spans[key]
	merged = end
	for _, sp := range spans {
		if joins(sp) {
			merged = max(merged, sp.end)
		}
	}
	if merged <= dead {
		return merged, false
	}
	if s.spans == nil {
		s.spans = map[uint32][]span{}
	}
	ns := span{start: t, end: merged, due: math.MaxInt64}
	kept := spans[:0]
	for _, sp := range spans {
		if joins(sp) {
			ns.start = min(ns.start, sp.start)
			if !sp.closed {
				ns.due = min(ns.due, sp.due) // its close is the merged span's
			}
			continue
		}
		kept = append(kept, sp)
	}
	if ns.due == math.MaxInt64 {
		// New, or joining closed spans only: its close is not pending.
		ns.due = ns.end
		s.heap.push(ns.due, sessionEnd{end: ns.due, key: key})
	}
	if out := append(kept, ns); len(out) != len(spans) {
		s.spans[key] = out
	} // else out is spans, rewritten in place: the map holds it already (an event extending its key's session)
	s.touch(key)
	return merged, true
}

func (s *sessionEnds) touch(key uint32) {
	if n := len(s.touched); n == 0 || s.touched[n-1] != key {
		s.touched = append(s.touched, key)
	}
}

// report appends the spans of the keys touched since the last report to
// m, and forgets which they were.
func (s *sessionEnds) report(part int32, m *roundMsg) {
	slices.Sort(s.touched)
	for _, key := range slices.Compact(s.touched) {
		from := len(m.spanBuf)
		m.spanBuf = append(m.spanBuf, s.spans[key]...)
		m.spans = append(m.spans, spanReport{part: part, key: key, spans: m.spanBuf[from:len(m.spanBuf):len(m.spanBuf)]})
	}
	s.touched = s.touched[:0]
}

// restore sets key's spans as a checkpoint saved them, each with the heap
// entry it has pending: its forget if it was closed, else its close — even
// at or below the watermark: a late event may have extended it, and its
// close ends a round at the next watermark move.
func (s *sessionEnds) restore(key uint32, spans []span) {
	if s.spans == nil {
		s.spans = map[uint32][]span{}
	}
	list := append(s.spans[key], spans...)
	s.spans[key] = list
	for i := len(list) - len(spans); i < len(list); i++ {
		sp := &list[i]
		if sp.closed {
			s.heap.push(sp.end+s.lateness, sessionEnd{end: sp.end, key: key, forget: true})
		} else {
			sp.due = sp.end
			s.heap.push(sp.end, sessionEnd{end: sp.end, key: key})
		}
	}
}

// closed handles the moments the watermark wm has passed: sessions that
// close, sessions to forget. It reports whether there were any. A close
// reached before its span's end (extended since) is scheduled again at
// that end; entries of spans that merged into others are stale and
// skipped.
func (s *sessionEnds) closed(wm int64) bool {
	any := false
	for {
		e, ok := s.heap.top()
		if !ok || e.at > wm {
			break
		}
		s.heap.pop()
		top := e.v
		spans := s.spans[top.key]
		for i := range spans {
			sp := &spans[i]
			if top.forget {
				if !sp.closed || sp.end != top.end {
					continue
				}
				any = true
				s.spans[top.key] = append(spans[:i], spans[i+1:]...)
				if len(s.spans[top.key]) == 0 {
					delete(s.spans, top.key)
				}
				s.touch(top.key)
				break
			}
			if sp.closed || sp.due != top.end {
				continue
			}
			if sp.end > top.end {
				sp.due = sp.end
				s.heap.push(sp.due, sessionEnd{end: sp.due, key: top.key})
				break
			}
			any = true
			sp.closed = true
			s.touch(top.key)
			s.heap.push(top.end+s.lateness, sessionEnd{end: top.end, key: top.key, forget: true})
			break
		}
	}
	return any
}

// worker processes whole partitions in rounds. It owns everything it
// touches: nothing is shared with other workers but the key table.
type worker struct {
	_      cpu.CacheLinePad // written per event: no line shared with another worker's data
	p      *plan
	x      *extractor
	keys   keyCache
	parts  []*partState
	waker  *waker
	states statePool
	out    *ring.Ring[*roundMsg] // to the coordinator
	back   *ring.Ring[*roundMsg] // reused messages from the coordinator
	round  uint64
	index  int // among the pipeline's workers

	msg    *roundMsg
	winIdx map[winKey]int // into msg.wins: findWindow past a key's chainWalk newest
	// Per key ID, the window it last observed this round, so that most
	// events skip the map: a key's events mostly fall in its current
	// window; in a session pipeline, its latest fragment in msg.sess.
	keyWin []keyWin
	winGen uint64  // counts begin calls: keyWin entries of older rounds are stale
	starts []int64 // scratch
	follow bool    // no end: follow the log
	// The coordinator's purge horizon as the round began (minWatermark
	// without a coordinator), and where the coordinator publishes it.
	horizon  int64
	horizons *atomic.Int64
	_        cpu.CacheLinePad
}

func newWorker(p *plan, kt *keyTable, parts []*partState, waker *waker, follow bool) *worker {
	return &worker{
		p: p, x: newExtractor(p), keys: keyCache{kt: kt, ids: map[string]cachedKey{}, seed: maphash.MakeSeed()},
		parts: parts, waker: waker, follow: follow,
		out: ring.New[*roundMsg](8), back: ring.New[*roundMsg](8),
		winIdx: map[winKey]int{}, states: statePool{layout: p.layout},
		starts: make([]int64, 0, cacheLine/8), horizon: minWatermark,
	}
}

// run processes rounds until every partition is exhausted (until-end) or
// ctx is done.
func (w *worker) run(ctx context.Context) error {
	for {
		msg, err := w.step(ctx)
		if err != nil {
			return err
		}
		if err := w.out.PushWait(ctx, msg); err != nil {
			return err
		}
		done := !w.follow
		for _, ps := range w.parts {
			done = done && ps.exhausted
		}
		if done {
			return w.out.PushWait(ctx, nil) // the end
		}
	}
}

// step runs one round: each partition in turn, until roundRecords records,
// a window boundary crossed by its watermark, or (following) nothing more
// to read now.
func (w *worker) step(ctx context.Context) (*roundMsg, error) {
	w.begin()
	idle := true
	for _, ps := range w.parts {
		for n := 0; n < roundRecords && !ps.exhausted; {
			recs, err := w.records(ctx, ps)
			if err != nil {
				return nil, err
			}
			if len(recs) == 0 {
				break
			}
			idle = false
			recs = recs[:min(len(recs), roundRecords-n)]
			done, boundary := len(recs), false
			for i := range recs {
				if w.process(ps, &recs[i]) {
					// Its watermark closed a window: the coordinator may emit.
					// The round ends here even if the read ends here too, so
					// that where rounds end does not depend on how the reads
					// fell (a restart reads from its checkpoint on).
					done, boundary = i+1, true
					break
				}
			}
			ps.pos += done
			n += done
			if boundary {
				break
			}
		}
		w.msg.parts = append(w.msg.parts, ps.partReport)
		if len(ps.sessions.touched) > 0 {
			ps.sessions.report(ps.id, w.msg)
		}
	}
	switch {
	case idle && w.follow:
		// Nothing anywhere: wait for data, but come back now and then so the
		// coordinator can notice idle partitions.
		w.waitAny(ctx, 100*time.Millisecond)
	case !idle && w.follow && w.waker != nil:
		// The coordinator merges round r of every worker together: wake the
		// idle ones, so that their empty round r comes now rather than at
		// their timeout. A backlog on one worker's partitions (a restart,
		// keys that all hash to one partition) went at one round per
		// 100 ms without this.
		for _, p := range w.waker.peers {
			signal(p)
		}
	}
	m := w.msg
	m.round, m.worker = w.round, w.index
	w.round++
	return m, nil
}

// begin starts a round's message, reusing one the coordinator sent back.
func (w *worker) begin() {
	m, ok := w.back.Pop()
	if ok {
		for i := range m.wins {
			w.states.put(m.wins[i].st)
		}
		for i := range m.sess {
			w.states.put(m.sess[i].st)
		}
		m.parts, m.wins, m.sess, m.side, m.buf = m.parts[:0], m.wins[:0], m.sess[:0], m.side[:0], m.buf[:0]
		m.spans, m.spanBuf = m.spans[:0], m.spanBuf[:0]
	} else {
		m = &roundMsg{}
	}
	m.keyEpoch = w.keys.sync()
	if w.horizons != nil {
		w.horizon = w.horizons.Load()
	}
	m.horizon = w.horizon
	w.msg = m
	w.winGen++
	clear(w.winIdx)
}

// statePool recycles aggregate states and their histogram pages: one per
// goroutine (a worker, the coordinator), so it needs no lock.
type statePool struct {
	layout *agg.Layout
	pages  agg.PagePool
	free   []*agg.State
}

func (sp *statePool) get() *agg.State {
	if n := len(sp.free); n > 0 {
		st := sp.free[n-1]
		sp.free = sp.free[:n-1]
		return st
	}
	return sp.layout.NewState()
}

// put resets st, keeping it and its pages for later.
func (sp *statePool) put(st *agg.State) {
	st.Reset(&sp.pages)
	sp.free = append(sp.free, st)
}

// records returns ps's next records, from ps.pos on in its current batch
// (the caller moves ps.pos past those it processes), or none if it has
// none now (following) or is exhausted.
func (w *worker) records(ctx context.Context, ps *partState) ([]log.Record, error) {
	if ps.feed.r != nil {
		return w.recordsLocal(ps)
	}
	for {
		if ps.cur != nil && ps.pos < len(ps.cur.recs) {
			return ps.cur.recs[ps.pos:], nil
		}
		if ps.cur != nil {
			ps.next = max(ps.next, ps.cur.end)
			ps.cur.reset()
			ps.feed.free.Push(ps.cur) // the Kafka poller refills it on its next pass
			ps.cur = nil
		}
		if b, ok := ps.feed.full.Pop(); ok {
			ps.cur, ps.pos = b, 0
			continue
		}
		if w.follow && ps.feed.fetched.Load() <= ps.next && ps.next >= ps.feed.highWater() {
			return nil, nil // caught up
		}
		if err := ps.feed.full.Wait(ctx); err != nil {
			return nil, err
		}
	}
}

// recordsLocal is records for a local partition: the worker reads it
// itself, in place. Following, it returns none when the partition is
// caught up; until-end, at the feed's end, which it marks exhausted.
func (w *worker) recordsLocal(ps *partState) ([]log.Record, error) {
	fd := ps.feed
	for ps.pos >= len(ps.read) {
		ps.next = max(ps.next, ps.readEnd)
		if ps.readBuf == nil {
			ps.readBuf = make([]log.Record, 0, batchRecords)
		}
		from := fd.r.Offset()
		recs, err := w.waker.read(fd, ps.readBuf)
		if err != nil {
			return nil, err
		}
		ps.read, ps.pos, ps.readEnd = recs, 0, fd.r.Offset()
		switch {
		case len(recs) > 0 || fd.r.Offset() != from:
			continue // records, or a gap skipped
		case fd.end < 0:
			return nil, nil // caught up
		case from >= fd.end:
			ps.exhausted = true
			return nil, nil
		}
		// Below the high watermark the log always has records (or a gap
		// to skip): nothing means the partition went away.
		return nil, fmt.Errorf("partition %d: no records at offset %d, below the end %d", ps.id, from, fd.end)
	}
	return ps.read[ps.pos:], nil
}

// waitAny parks until records may be waiting (an append, a Kafka batch)
// or d passes.
func (w *worker) waitAny(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.waker.delivered:
	case <-t.C:
	case <-ctx.Done():
	}
}

// process handles one record; it reports whether the partition's
// watermark crossed a window end.
func (w *worker) process(ps *partState, rec *log.Record) bool {
	ps.records++
	ps.next = rec.Offset + 1
	t, r, ok := w.x.extract(rec)
	var key uint32
	switch {
	case ok:
		if key = w.keys.id(w.x.key, ps.id); key == invalidKey {
			r, ok = reasonInvalidJSON, false
		}
	case r == reasonMissingTime || r == reasonBadTime:
		// Read before the time: a strict parser would have rejected the
		// whole record.
		if !validKey(w.x.key) {
			r = reasonInvalidJSON
		}
	}
	if !ok {
		ps.rejected[r]++
		if w.p.cfg.DLQ {
			w.side(false, rec, dlqEnvelope(w.msg.buf, w.p, rec, r))
		}
		return false
	}
	ps.events++
	// watermark_p = max event time seen in p - max_out_of_order (SPEC).
	old := ps.wm
	if t > ps.maxT {
		ps.maxT = t
		ps.wm = t - w.p.maxOOO
	}
	// Lateness is judged by the partition's watermark (SPEC), or by the
	// coordinator's purge horizon where that is ahead: only a partition
	// that was idle, and comes back with events older than windows
	// forgotten meanwhile, is behind it.
	wm := max(ps.wm, w.horizon)
	accepted, lateAccepted := false, false
	win := w.p.windows
	if win.Kind == agg.Session {
		// The event joins the sessions that were there before it, as in
		// Flink and Kafka Streams, where an element is merged before the
		// watermark it brings purges anything: a session it meets that its
		// own time makes too late is still joined. (An event that moves
		// the watermark is never late itself.)
		dead := int64(minWatermark)
		if before := max(old, w.horizon); before != minWatermark {
			dead = before - w.p.lateness
		}
		end := t + win.Gap
		if merged, ok := ps.sessions.open(key, t, end, dead); ok {
			accepted = true
			lateAccepted = merged <= wm
			w.session(key, t, end, dead)
		}
	} else {
		w.starts = win.Starts(t, w.starts[:0])
		for _, s := range w.starts {
			end := s + win.Size
			if wm >= end+w.p.lateness {
				continue // too late for this window
			}
			accepted = true
			lateAccepted = lateAccepted || end <= wm
			w.observe(s, key)
		}
	}
	if !accepted {
		ps.lateDropped++
		if w.p.cfg.LateTopic {
			w.side(true, rec, lateEnvelope(w.msg.buf, w.p, rec, t, wm))
		}
	}
	// The round ends where the coordinator may have something to emit: the
	// watermark closed a window, or a late event changed a closed one (one
	// revision per late event, as Flink's late firings).
	if lateAccepted {
		return true
	}
	if old == minWatermark || ps.wm == old {
		return false
	}
	if win.Kind == agg.Session {
		return ps.sessions.closed(ps.wm)
	}
	return win.Boundary(old, ps.wm)
}

func (w *worker) observe(start int64, key uint32) {
	kw := w.lastOf(key)
	i := int(kw.idx)
	if kw.gen != w.winGen {
		i = w.addWindow(start, key, -1)
		*kw = keyWin{start: start, idx: int32(i), head: int32(i), gen: w.winGen}
	} else if kw.start != start {
		i = w.findWindow(start, key, kw.head)
		if i < 0 {
			i = w.addWindow(start, key, kw.head)
			kw.head = int32(i)
		}
		kw.start, kw.idx = start, int32(i)
	}
	d := &w.msg.wins[i]
	d.events++
	d.st.Observe(w.p.layout, &w.x.ev, &w.states.pages)
}

// keyWin is a key's last window in a round: its start and its index in
// the round's msg.wins (a session pipeline: msg.sess), valid while gen is
// the worker's winGen; and the key's window added last to the round,
// which links to the ones before it (winDelta.prev).
type keyWin struct {
	start int64
	idx   int32
	head  int32
	gen   uint64
}

// chainWalk is how many of a key's windows in a round findWindow looks
// through, newest first, before it asks the map: an event of hopping
// windows is in size/advance of them, mostly the newest few.
const chainWalk = 8

// findWindow returns the index in msg.wins of key's window at start this
// round, or -1; head is the key's window added last.
func (w *worker) findWindow(start int64, key uint32, head int32) int {
	j := head
	for range chainWalk {
		if j < 0 {
			return -1 // the key's windows this round, all seen
		}
		d := &w.msg.wins[j]
		if d.start == start {
			return int(j)
		}
		j = d.prev
	}
	if i, ok := w.winIdx[winKey{start, key}]; ok {
		return i
	}
	return -1
}

// addWindow adds key's window at start to the round; prev is the key's
// window added before it (-1: none).
func (w *worker) addWindow(start int64, key uint32, prev int32) int {
	i := len(w.msg.wins)
	w.msg.wins = append(w.msg.wins, winDelta{start: start, key: key, prev: prev, st: w.states.get()})
	w.winIdx[winKey{start, key}] = i
	return i
}

// lastOf returns key's keyWin.
func (w *worker) lastOf(key uint32) *keyWin {
	if int(key) >= len(w.keyWin) {
		w.keyWin = byID(w.keyWin, key)
	}
	return &w.keyWin[key]
}

// session adds the event at t to the key's latest fragment of this round
// if the two windows meet ([start, end) intersecting, Flink's rule), or
// starts a fragment; the coordinator merges fragments into sessions, those
// ending after dead (open).
func (w *worker) session(key uint32, t, end, dead int64) {
	kw := w.lastOf(key)
	if kw.gen == w.winGen {
		d := &w.msg.sess[kw.idx]
		if t <= d.end && end >= d.start {
			d.start, d.end = min(d.start, t), max(d.end, end)
			d.events++
			d.st.Observe(w.p.layout, &w.x.ev, &w.states.pages)
			return
		}
	}
	*kw = keyWin{idx: int32(len(w.msg.sess)), gen: w.winGen}
	w.msg.sess = append(w.msg.sess, sessDelta{key: key, start: t, end: end, events: 1, st: w.states.get(), dead: dead})
	d := &w.msg.sess[len(w.msg.sess)-1]
	d.st.Observe(w.p.layout, &w.x.ev, &w.states.pages)
}

// side queues a copy of rec for the dead-letter or late topic; value was
// appended to msg.buf by the envelope function.
func (w *worker) side(late bool, rec *log.Record, buf []byte) {
	start := len(w.msg.buf)
	w.msg.buf = buf
	kstart := len(w.msg.buf)
	w.msg.buf = append(w.msg.buf, rec.Key...)
	sr := sideRecord{late: late, part: rec.Partition, value: w.msg.buf[start:kstart:kstart]}
	if rec.Key != nil {
		sr.key = w.msg.buf[kstart:len(w.msg.buf):len(w.msg.buf)]
	}
	w.msg.side = append(w.msg.side, sr)
}
