package pipeline

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// pin locks the calling goroutine to its OS thread and that thread to the
// n-th CPU the process may use, so that a worker keeps its core and its
// caches. Where the OS refuses, the goroutine is left unpinned.
func pin(n int) bool {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return false
	}
	cpus := make([]int, 0, allowed.Count())
	for i := 0; i < len(allowed)*64; i++ {
		if allowed.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) == 0 {
		return false
	}
	runtime.LockOSThread()
	var one unix.CPUSet
	one.Set(cpus[n%len(cpus)])
	return unix.SchedSetaffinity(0, &one) == nil
}
