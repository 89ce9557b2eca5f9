package flock

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A lock held by another open file is refused, naming the holder's pid,
// with and without a timeout to wait; closing the holder's file releases
// it.
func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	f, err := Lock(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, timeout := range []time.Duration{0, 30 * time.Millisecond} {
		_, err := Lock(path, timeout)
		var held *HeldError
		if !errors.As(err, &held) || held.Holder != strconv.Itoa(os.Getpid()) || held.Path != path {
			t.Fatalf("second lock (timeout %v): %v", timeout, err)
		}
	}
	f.Close()
	g, err := Lock(path, 0)
	if err != nil {
		t.Fatalf("after the holder closed it: %v", err)
	}
	g.Close()
}
