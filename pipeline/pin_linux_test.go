package pipeline

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestPin: a pinned goroutine's thread may run on one CPU only.
func TestPin(t *testing.T) {
	done := make(chan int)
	go func() {
		// The goroutine exits locked to its thread, which then exits too:
		// the affinity does not leak into the process's other threads.
		if !pin(1) {
			done <- -1
			return
		}
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			done <- -1
			return
		}
		done <- set.Count()
	}()
	if n := <-done; n != 1 {
		t.Fatalf("a pinned thread may run on %d CPUs, want 1", n)
	}
}
