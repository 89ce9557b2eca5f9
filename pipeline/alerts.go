package pipeline

import "github.com/fastflow/fastflow/agg"

// alertStates holds each rule's state per key: [rule][key ID], the zero
// state (a new key's) where the rule has seen no window of the key. Every
// window emitted looks its key's state up once per rule; with thousands
// of keys a map's probe for it missed the cache (pipeline/RunManyKeys),
// an index by key ID does not probe, and states held by value rather than
// by pointer miss it once less. Key IDs are dense (keyTable), and a
// forgotten key's states are cleared before it is reused.
type alertStates [][]alertState

// get returns rule's state for key. The pointer is valid until the next
// get (which may grow the rule's states).
func (a alertStates) get(rule int, key uint32) *alertState {
	byKey := a[rule]
	if int(key) >= len(byKey) {
		byKey = byID(byKey, key)
		a[rule] = byKey
	}
	return &byKey[key]
}

// forget drops key's states.
func (a alertStates) forget(key uint32) {
	for _, byKey := range a {
		if int(key) < len(byKey) {
			byKey[key] = alertState{}
		}
	}
}

// alertState is one rule for one key: whether it fires, and the last
// windows it saw (as many as the rule's for), so that a revision of one of
// them is re-evaluated in place.
type alertState struct {
	firing  bool
	history []alertObs // by window start, oldest first
	held    bool       // counted in the coordinator's alertHeld (hold)
}

// hold keeps the coordinator's count of key's alert states that differ
// from a new key's — firing, or the latest window meeting the condition —
// which keep the key from being forgotten (usedKeys): a count per key ID
// rather than a walk over every state per sweep.
func (c *coordinator) hold(key uint32, st *alertState) {
	held := st.firing || len(st.history) > 0 && st.history[len(st.history)-1].met
	if held == st.held {
		return
	}
	st.held = held
	c.alertHeld = byID(c.alertHeld, key)
	if held {
		c.alertHeld[key]++
	} else {
		c.alertHeld[key]--
	}
}

type alertObs struct {
	start int64
	met   bool
}

// evaluate applies alert rule i to a key's emitted window, Prometheus
// style: the rule fires once `for` consecutive windows of the key meet the
// condition and resolves on the first window that does not. A null value
// does not meet it. Only transitions are returned. A revision re-evaluates
// its own window.
func (c *coordinator) evaluate(i int, ws *winState, key string, vals []agg.Value) (alertEvent, bool) {
	r := &c.p.alerts[i]
	st := c.alerts.get(i, ws.key)
	v := vals[r.metric]
	met := v.OK && r.op.num(v.V, r.threshold)
	j := len(st.history) - 1
	for j >= 0 && st.history[j].start > ws.start {
		j--
	}
	switch {
	case j >= 0 && st.history[j].start == ws.start:
		st.history[j].met = met // a revision
	case len(st.history) < r.forN:
		st.history = append(st.history, alertObs{})
		copy(st.history[j+2:], st.history[j+1:])
		st.history[j+1] = alertObs{start: ws.start, met: met}
	case j >= 0:
		// Full: the oldest goes, in place (re-slicing past it would make
		// every append past the capacity copy the history).
		copy(st.history, st.history[1:j+1])
		st.history[j] = alertObs{start: ws.start, met: met}
	}
	streak := 0
	for k := len(st.history) - 1; k >= 0 && st.history[k].met; k-- {
		streak++
	}
	firing := streak >= r.forN
	changed := firing != st.firing
	st.firing = firing
	c.hold(ws.key, st)
	if !changed {
		return alertEvent{}, false
	}
	return alertEvent{rule: r, firing: firing, key: key, start: ws.start, end: ws.end, value: v}, true
}
