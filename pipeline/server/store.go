package server

import (
	"bytes"
	"container/list"
	"encoding/json"
	"math/big"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastflow/fastflow/pipeline"
)

// keepWindows is how many recent windows the server keeps per key.
const keepWindows = 240

// keepTransitions is how many recent alert transitions it keeps.
const keepTransitions = 100

// keepKeys and keepLines bound what the server keeps per pipeline: the
// keys, and their windows in all (~300 bytes a line). A pipeline grouped
// by a field of unbounded cardinality would otherwise grow the store for
// as long as the server runs; past either bound the key updated least
// recently goes, from the query API and /metrics alike (as Prometheus
// drops a series that stops being scraped). Variables for tests.
var (
	keepKeys  = 10_000
	keepLines = 100_000
)

// store keeps what the query API, the stream and /metrics show: recent
// window results per pipeline and key, active alerts and recent alert
// transitions. Pipelines write to it from their coordinators (Observe);
// HTTP handlers read it.
type store struct {
	mu     sync.RWMutex
	pipes  map[string]*pipeStore
	active map[string]*AlertView // by pipeline, alert and key
	recent []AlertView           // newest last
	hub    *hub
	now    func() time.Time
	// latency observes, per emitted window, the wall time since its end.
	latency func(pipeline string, seconds float64)
}

type pipeStore struct {
	groupBy []string
	metrics []string
	// sessions: a result replaces the key's stored windows it covers (the
	// sessions a late event merged into it); other windows of a kind
	// overlap by design (hopping).
	sessions bool
	keys     map[string]*keyStore // by the key's JSON object
	byUse    *list.List           // of *keyStore, the most recently updated first
	lines    int                  // windows held, over every key
}

type keyStore struct {
	key     json.RawMessage
	use     *list.Element // in byUse
	windows []windowView  // by start, latest revision of each
	latest  map[string]float64
	valid   map[string]bool
}

type windowView struct {
	start int64
	line  json.RawMessage
}

// AlertView is an alert as the API shows it: Prometheus-like states.
type AlertView struct {
	Pipeline    string          `json:"pipeline"`
	Alert       string          `json:"alert"`
	Severity    string          `json:"severity"`
	State       string          `json:"state"` // firing or resolved
	Key         json.RawMessage `json:"key"`
	Metric      string          `json:"metric"`
	Value       *float64        `json:"value"`
	Threshold   float64         `json:"threshold"`
	WindowStart string          `json:"window_start"`
	WindowEnd   string          `json:"window_end"`
	ActiveAt    string          `json:"active_at"`             // wall time it started firing
	ResolvedAt  string          `json:"resolved_at,omitempty"` // wall time it resolved
}

func newStore(cfgs []*pipeline.Config) *store {
	s := &store{pipes: map[string]*pipeStore{}, active: map[string]*AlertView{}, hub: newHub(), now: time.Now}
	for _, c := range cfgs {
		ps := &pipeStore{groupBy: c.GroupBy, keys: map[string]*keyStore{}, byUse: list.New(), sessions: c.Window.Type == "session"}
		for _, m := range c.Metrics {
			ps.metrics = append(ps.metrics, m.Name)
		}
		s.pipes[c.Name] = ps
	}
	return s
}

// windowLine and alertLine are the parts of result lines the store reads.
type windowLine struct {
	Key         json.RawMessage     `json:"key"`
	WindowStart string              `json:"window_start"`
	WindowEnd   string              `json:"window_end"`
	Metrics     map[string]*float64 `json:"metrics"`
}

type alertLine struct {
	Alert       string          `json:"alert"`
	Severity    string          `json:"severity"`
	State       string          `json:"state"`
	Key         json.RawMessage `json:"key"`
	WindowStart string          `json:"window_start"`
	WindowEnd   string          `json:"window_end"`
	Metric      string          `json:"metric"`
	Value       *float64        `json:"value"`
	Threshold   float64         `json:"threshold"`
}

// observe records a result; it is a pipeline.Observer.
func (s *store) observe(r *pipeline.Result) {
	line := append(json.RawMessage(nil), r.Line...)
	event := "window"
	if r.Alert {
		event = "alert"
		s.alert(r.Pipeline, line)
	} else {
		s.window(r, line)
	}
	s.hub.publish(event, line)
}

func (s *store) window(r *pipeline.Result, line json.RawMessage) {
	var w windowLine
	if json.Unmarshal(line, &w) != nil {
		return
	}
	if s.latency != nil {
		s.latency(r.Pipeline, s.now().Sub(time.UnixMilli(r.EndMs)).Seconds())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.pipes[r.Pipeline]
	if ps == nil {
		return
	}
	ks := ps.keys[string(w.Key)]
	if ks == nil {
		ks = &keyStore{key: w.Key, latest: map[string]float64{}, valid: map[string]bool{}}
		ps.keys[string(w.Key)] = ks
		ks.use = ps.byUse.PushFront(ks)
	} else {
		ps.byUse.MoveToFront(ks.use)
	}
	i := sort.Search(len(ks.windows), func(i int) bool { return ks.windows[i].start >= r.StartMs })
	if ps.sessions {
		// Sessions that a late event merged into this one: their starts
		// lie inside it (a merged session starts at the earliest).
		j := i
		if j < len(ks.windows) && ks.windows[j].start == r.StartMs {
			j++
		}
		k := j
		for k < len(ks.windows) && ks.windows[k].start < r.EndMs {
			k++
		}
		ks.windows = append(ks.windows[:j], ks.windows[k:]...)
		ps.lines -= k - j
	}
	switch {
	case i < len(ks.windows) && ks.windows[i].start == r.StartMs:
		ks.windows[i].line = line // a revision replaces its window
	default:
		ks.windows = append(ks.windows, windowView{})
		copy(ks.windows[i+1:], ks.windows[i:])
		ks.windows[i] = windowView{start: r.StartMs, line: line}
		ps.lines++
		if len(ks.windows) > keepWindows {
			ps.lines -= len(ks.windows) - keepWindows
			ks.windows = ks.windows[len(ks.windows)-keepWindows:]
		}
	}
	for len(ps.keys) > 1 && (len(ps.keys) > keepKeys || ps.lines > keepLines) {
		old := ps.byUse.Remove(ps.byUse.Back()).(*keyStore)
		delete(ps.keys, string(old.key))
		ps.lines -= len(old.windows)
	}
	if i >= len(ks.windows)-1 {
		// The newest window gives the current value of each metric.
		for name, v := range w.Metrics {
			ks.valid[name] = v != nil
			if v != nil {
				ks.latest[name] = *v
			}
		}
	}
}

func (s *store) alert(pipe string, line json.RawMessage) {
	var a alertLine
	if json.Unmarshal(line, &a) != nil {
		return
	}
	id := pipe + "\x00" + a.Alert + "\x00" + string(a.Key)
	now := s.now().UTC().Format(time.RFC3339Nano)
	s.mu.Lock()
	defer s.mu.Unlock()
	v := AlertView{Pipeline: pipe, Alert: a.Alert, Severity: a.Severity, State: a.State, Key: a.Key, Metric: a.Metric,
		Value: a.Value, Threshold: a.Threshold, WindowStart: a.WindowStart, WindowEnd: a.WindowEnd, ActiveAt: now}
	if a.State == "firing" {
		s.active[id] = &v
	} else {
		if prev := s.active[id]; prev != nil {
			v.ActiveAt = prev.ActiveAt
		}
		v.ResolvedAt = now
		delete(s.active, id)
	}
	s.recent = append(s.recent, v)
	if len(s.recent) > keepTransitions {
		s.recent = s.recent[len(s.recent)-keepTransitions:]
	}
}

// windows returns the last n windows of the keys matching key ("" for
// all) — of the `keys` updated most recently among them, if keys > 0: the
// raw result lines, oldest first per key, keys in order.
func (s *store) windows(pipe, key string, n, keys int) ([]json.RawMessage, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ps := s.pipes[pipe]
	if ps == nil {
		return nil, false
	}
	var picked []*keyStore
	for e := ps.byUse.Front(); e != nil && (keys == 0 || len(picked) < keys); e = e.Next() {
		if ks := e.Value.(*keyStore); key == "" || keyMatches(ks.key, key) {
			picked = append(picked, ks)
		}
	}
	sort.Slice(picked, func(i, j int) bool { return string(picked[i].key) < string(picked[j].key) })
	out := []json.RawMessage{}
	for _, ks := range picked {
		ws := ks.windows
		if n > 0 && len(ws) > n {
			ws = ws[len(ws)-n:]
		}
		for _, w := range ws {
			out = append(out, w.line)
		}
	}
	return out, true
}

// keyMatches reports whether a key object matches the ?key= parameter:
// the JSON object itself, or one of its values as text (so ?key=payments
// finds {"service":"payments"}). Numbers match by their exact value: 1.0
// finds 1, and 9007199254740993 finds that ID, not 9007199254740992 (the
// same float64).
func keyMatches(key json.RawMessage, param string) bool {
	var fields map[string]json.RawMessage
	if json.Unmarshal(key, &fields) != nil {
		return false
	}
	if strings.HasPrefix(param, "{") {
		var want map[string]json.RawMessage
		if json.Unmarshal([]byte(param), &want) != nil || len(want) != len(fields) {
			return false
		}
		for f, v := range want {
			if got, ok := fields[f]; !ok || !sameValue(got, v) {
				return false
			}
		}
		return true
	}
	for _, v := range fields {
		var s string
		if len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &s) == nil && s == param || sameValue(v, json.RawMessage(param)) {
			return true
		}
	}
	return false
}

// sameValue reports whether two JSON texts are one value: numbers by their
// exact value, the rest as encoding/json decodes them (numbers inside by
// their text).
func sameValue(a, b json.RawMessage) bool {
	number := func(t json.RawMessage) (*big.Rat, bool) {
		if len(t) == 0 || t[0] != '-' && (t[0] < '0' || t[0] > '9') || !json.Valid(t) {
			return nil, false
		}
		return new(big.Rat).SetString(string(t))
	}
	x, xNum := number(a)
	y, yNum := number(b)
	if xNum || yNum {
		return xNum && yNum && x.Cmp(y) == 0
	}
	decode := func(t json.RawMessage) ([]byte, bool) {
		d := json.NewDecoder(bytes.NewReader(t))
		d.UseNumber()
		var v any
		if d.Decode(&v) != nil || d.More() {
			return nil, false
		}
		out, err := json.Marshal(v)
		return out, err == nil
	}
	u, ok1 := decode(a)
	w, ok2 := decode(b)
	return ok1 && ok2 && bytes.Equal(u, w)
}

// alerts returns the active alerts, by pipeline, alert and key, and the
// recent transitions, newest first.
func (s *store) alerts() (active, recent []AlertView) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, a := range s.active {
		active = append(active, *a)
	}
	sort.Slice(active, func(i, j int) bool {
		a, b := active[i], active[j]
		return a.Pipeline+a.Alert+string(a.Key) < b.Pipeline+b.Alert+string(b.Key)
	})
	for i := len(s.recent) - 1; i >= 0; i-- {
		recent = append(recent, s.recent[i])
	}
	if active == nil {
		active = []AlertView{}
	}
	if recent == nil {
		recent = []AlertView{}
	}
	return active, recent
}

// gauge is the current value of one metric of one key.
type gauge struct {
	pipeline, metric string
	groupBy          []string
	key              json.RawMessage
	value            float64
}

// gauges lists the latest value of every metric of every key.
func (s *store) gauges() []gauge {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []gauge
	for name, ps := range s.pipes {
		for _, ks := range ps.keys {
			for _, m := range ps.metrics {
				if ks.valid[m] {
					out = append(out, gauge{pipeline: name, metric: m, groupBy: ps.groupBy, key: ks.key, value: ks.latest[m]})
				}
			}
		}
	}
	return out
}

// hub fans events out to stream subscribers. A subscriber that does not
// keep up loses events (counted), never slowing the pipelines.
type hub struct {
	mu      sync.Mutex
	subs    map[chan event]struct{}
	dropped atomic.Int64
}

type event struct {
	name string
	data json.RawMessage
}

func newHub() *hub { return &hub{subs: map[chan event]struct{}{}} }

func (h *hub) subscribe() chan event {
	c := make(chan event, 1024)
	h.mu.Lock()
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return c
}

func (h *hub) unsubscribe(c chan event) {
	h.mu.Lock()
	delete(h.subs, c)
	h.mu.Unlock()
}

func (h *hub) publish(name string, data json.RawMessage) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs {
		select {
		case c <- event{name, data}:
		default:
			h.dropped.Add(1)
		}
	}
}
