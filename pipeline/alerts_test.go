package pipeline

import "testing"

// TestAlertStatesForgetClears: a forgotten key's alert states are a new
// key's again - its ID goes to the next new key, which must not inherit
// the rules' window history (a window of the same start would read as a
// revision of the old key's).
func TestAlertStatesForgetClears(t *testing.T) {
	a := make(alertStates, 2)
	for rule := range 2 {
		st := a.get(rule, 5)
		st.history = append(st.history, alertObs{start: 60_000, met: true}, alertObs{start: 120_000})
	}
	a.get(1, 9).firing = true
	a.forget(5)
	for rule := range 2 {
		if st := a.get(rule, 5); st.firing || st.held || len(st.history) != 0 {
			t.Fatalf("rule %d: key 5's state after forget: %+v", rule, *st)
		}
	}
	if !a.get(1, 9).firing {
		t.Fatal("another key's state changed")
	}
}
