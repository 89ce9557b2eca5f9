package agg

import "fmt"

// WindowKind is the kind of a window.
type WindowKind uint8

const (
	Tumbling WindowKind = iota // fixed size, back to back
	Hopping                    // fixed size, starting every Advance
	Session                    // per key, closed by a Gap without events
)

// Windows assigns event times (unix ms) to windows [start, end). Tumbling
// and hopping windows are aligned to the Unix epoch: their starts are
// multiples of Advance (Size for tumbling), as in Flink and Kafka Streams.
type Windows struct {
	Kind    WindowKind
	Size    int64 // ms; tumbling and hopping
	Advance int64 // ms; hopping (Size for tumbling)
	Gap     int64 // ms; session
}

// MaxWindowsPerEvent bounds how many hopping windows an event belongs to
// (size / advance): each is updated per event, so a size of a day with an
// advance of a millisecond would make one event cost 86 million updates.
const MaxWindowsPerEvent = 10_000

// WindowsPerEvent is how many hopping windows of size and advance (both
// positive, in any one unit) an event belongs to: size / advance, rounded
// up.
func WindowsPerEvent(size, advance int64) int64 { return (size + advance - 1) / advance }

// Validate reports an invalid window definition.
func (w Windows) Validate() error {
	switch w.Kind {
	case Tumbling:
		if w.Size <= 0 {
			return fmt.Errorf("size must be positive")
		}
	case Hopping:
		if w.Size <= 0 || w.Advance <= 0 {
			return fmt.Errorf("size and advance must be positive")
		}
		if w.Advance > w.Size {
			return fmt.Errorf("advance (%dms) must not exceed size (%dms)", w.Advance, w.Size)
		}
		if n := WindowsPerEvent(w.Size, w.Advance); n > MaxWindowsPerEvent {
			return fmt.Errorf("size %dms / advance %dms puts every event in %d windows; at most %d", w.Size, w.Advance, n, MaxWindowsPerEvent)
		}
	case Session:
		if w.Gap <= 0 {
			return fmt.Errorf("gap must be positive")
		}
	}
	return nil
}

func (w Windows) step() int64 {
	if w.Kind == Hopping {
		return w.Advance
	}
	return w.Size
}

// Starts appends to dst the starts of the windows containing t, oldest
// first. For session windows it appends t: the window [t, t+Gap) that
// later merges with its neighbours.
func (w Windows) Starts(t int64, dst []int64) []int64 {
	switch w.Kind {
	case Session:
		return append(dst, t)
	case Tumbling:
		return append(dst, floorDiv(t, w.Size)*w.Size)
	}
	last := floorDiv(t, w.Advance) * w.Advance
	for s := last - ((w.Size-1)/w.Advance)*w.Advance; s <= last; s += w.Advance {
		if t < s+w.Size {
			dst = append(dst, s)
		}
	}
	return dst
}

// End returns the end of the window that starts at start (for session
// windows, of the window a single event at start opens).
func (w Windows) End(start int64) int64 {
	if w.Kind == Session {
		return start + w.Gap
	}
	return start + w.Size
}

// LastEnd returns the end of the last window that contains t: once the
// watermark reaches it, no window of t is open.
func (w Windows) LastEnd(t int64) int64 {
	if w.Kind == Session {
		return t + w.Gap
	}
	return floorDiv(t, w.step())*w.step() + w.Size
}

// Boundary reports whether some window ends in (from, to]: a watermark
// moving from from to to closes a window. Always true for sessions, whose
// ends depend on the data.
func (w Windows) Boundary(from, to int64) bool {
	if to <= from {
		return false
	}
	if w.Kind == Session {
		return true
	}
	// Ends are start+Size with start a multiple of step: ends ≡ Size mod step.
	s := w.step()
	return floorDiv(to-w.Size, s) != floorDiv(from-w.Size, s)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
