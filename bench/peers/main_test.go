package main

import (
	"context"
	"testing"
)

// TestCompareTiny runs the whole comparison on a few events: it builds,
// both pipelines agree, and every figure is a rate.
func TestCompareTiny(t *testing.T) {
	rows, err := Compare(context.Background(), 5000, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		if !(r.Fastflow > 0 && r.Peer > 0) {
			t.Fatalf("row %+v", r)
		}
		t.Logf("%-30s fastflow %10.0f/s  peer %10.0f/s  %.2fx", r.What, r.Fastflow, r.Peer, r.Fastflow/r.Peer)
	}
}
