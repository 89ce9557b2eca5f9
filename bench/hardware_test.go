package bench

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCores counts cores from a sysfs topology written for the CPUs this
// process may run on: two threads of one core count once, and a tree that
// does not tell gives 0 rather than a guess.
func TestCores(t *testing.T) {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Skip(err)
	}
	write := func(root string, coreOf func(i int) int) {
		for cpu, i := 0, 0; i < allowed.Count(); cpu++ {
			if !allowed.IsSet(cpu) {
				continue
			}
			dir := filepath.Join(root, "cpu"+strconv.Itoa(cpu), "topology")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, v := range map[string]int{"physical_package_id": 0, "core_id": coreOf(i)} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(strconv.Itoa(v)+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			i++
		}
	}
	own := t.TempDir()
	write(own, func(i int) int { return i })
	if got := cores(own); got != allowed.Count() {
		t.Errorf("a core per CPU: %d cores, want %d", got, allowed.Count())
	}
	shared := t.TempDir()
	write(shared, func(i int) int { return i / 2 }) // two threads per core
	if got, want := cores(shared), (allowed.Count()+1)/2; got != want {
		t.Errorf("two threads per core: %d cores, want %d", got, want)
	}
	if got := cores(t.TempDir()); got != 0 {
		t.Errorf("no topology: %d cores, want 0", got)
	}
	h := Machine()
	if h.CPUs != runtime.NumCPU() || h.Cores < 0 || h.Cores > h.CPUs {
		t.Errorf("Machine: %d CPUs, %d cores (NumCPU %d)", h.CPUs, h.Cores, runtime.NumCPU())
	}
}
