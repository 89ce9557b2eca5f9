package pipeline

import "slices"

// windowsByEnd indexes the coordinator's tumbling and hopping windows by
// their end, so that a round finds the windows a watermark closes, and
// the windows it forgets, without looking at the others. With thousands
// of keys a round closes a few percent of the windows held (those of one
// end; the rest wait for allowed_lateness or are still open): a scan of
// them all per round was most of the coordinator's time, and the
// coordinator is the one goroutine every result goes through.
//
// Every window a watermark has not reached is unemitted, and so dirty
// (it holds the events that made it): the windows an advance to wm emits
// are those of the ends it passes, plus the emitted windows that late
// events changed since (late). Ends are few (one per window start within
// size + allowed_lateness of the watermark), kept sorted.
type windowsByEnd struct {
	byEnd  map[int64][]*winState
	ends   []int64 // the keys of byEnd, ascending
	closed int     // ends[:closed] are at or before the watermark of the latest collect
	late   []*winState
}

func newWindowsByEnd() windowsByEnd { return windowsByEnd{byEnd: map[int64][]*winState{}} }

// add indexes a window new to the coordinator, whose watermark is wm: one
// that ends at or before wm (a late event's, for a key the window had no
// event of) is due at the next collect, if dirty.
func (x *windowsByEnd) add(ws *winState, wm int64) {
	list, ok := x.byEnd[ws.end]
	x.byEnd[ws.end] = append(list, ws)
	if !ok {
		i, _ := slices.BinarySearch(x.ends, ws.end)
		x.ends = slices.Insert(x.ends, i, ws.end)
		if ws.end <= wm {
			x.closed++
		}
	}
	if ws.end <= wm && ws.dirty {
		x.late = append(x.late, ws)
	}
}

// changed notes that an emitted window became dirty (a late event went
// into it): due at the next collect if wm is at or past its end (else
// when a collect passes its end; a Kafka source's coordinator starts from
// the lowest of its partitions' watermarks, behind what some emitted).
func (x *windowsByEnd) changed(ws *winState, wm int64) {
	if ws.end <= wm {
		x.late = append(x.late, ws)
	}
}

// collect appends to dst the dirty windows that end at or before wm,
// which is at or after the previous collect's, in no particular order.
func (x *windowsByEnd) collect(wm int64, dst []*winState) []*winState {
	for _, ws := range x.late {
		if ws.dirty {
			dst = append(dst, ws)
		}
	}
	clear(x.late)
	x.late = x.late[:0]
	for ; x.closed < len(x.ends) && x.ends[x.closed] <= wm; x.closed++ {
		for _, ws := range x.byEnd[x.ends[x.closed]] {
			if ws.dirty {
				dst = append(dst, ws)
			}
		}
	}
	return dst
}

// purge forgets, through drop, the windows that end (plus lateness) at or
// before horizon, oldest end first. A dirty one, not emitted since it
// changed, is kept, and so are the ends after it.
func (x *windowsByEnd) purge(horizon, lateness int64, drop func(*winState)) {
	n := 0
	for _, end := range x.ends {
		if end+lateness > horizon {
			break
		}
		list := x.byEnd[end]
		kept := list[:0]
		for _, ws := range list {
			if ws.dirty {
				kept = append(kept, ws)
			} else {
				drop(ws)
			}
		}
		clear(list[len(kept):])
		if len(kept) > 0 {
			x.byEnd[end] = kept
			break
		}
		delete(x.byEnd, end)
		n++
	}
	x.ends = slices.Delete(x.ends, 0, n)
	x.closed = max(0, x.closed-n)
}

// minHeap is a binary min-heap of values by the moment at which they are
// due: the worker's session closes and forgets (sessionEnds), the
// coordinator's sessions to emit and to forget (sessDue, sessDone).
type minHeap[V any] []heapEntry[V]

type heapEntry[V any] struct {
	at int64
	v  V
}

func (h *minHeap[V]) push(at int64, v V) {
	q := append(*h, heapEntry[V]{at, v})
	for i := len(q) - 1; i > 0; {
		parent := (i - 1) / 2
		if q[parent].at <= q[i].at {
			break
		}
		q[parent], q[i] = q[i], q[parent]
		i = parent
	}
	*h = q
}

// top returns the entry due first; ok is false if h is empty.
func (h minHeap[V]) top() (e heapEntry[V], ok bool) {
	if len(h) == 0 {
		return e, false
	}
	return h[0], true
}

// pop removes the top entry.
func (h *minHeap[V]) pop() {
	q := *h
	n := len(q) - 1
	q[0] = q[n]
	q[n] = heapEntry[V]{}
	q = q[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && q[l].at < q[m].at {
			m = l
		}
		if r < n && q[r].at < q[m].at {
			m = r
		}
		if m == i {
			break
		}
		q[m], q[i] = q[i], q[m]
		i = m
	}
	*h = q
}
