package bench

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/klauspost/cpuid/v2"
	"golang.org/x/sys/unix"
)

// Hardware describes the machine a benchmark ran on, from cpuid, /proc and
// /sys. PhysicalCores and LogicalCores are what the processor's cpuid
// leaves say; in a virtual machine those are the hypervisor's, often the
// host's (254 on a 2-vCPU VM here), so CPUs and Cores say what this
// process runs on, as the kernel shows it.
type Hardware struct {
	CPU           string `json:"cpu"`
	PhysicalCores int    `json:"physical_cores"`
	LogicalCores  int    `json:"logical_cores"`
	CPUs          int    `json:"cpus"`  // the CPUs this process may run on (its affinity)
	Cores         int    `json:"cores"` // the physical cores those CPUs are on; 0 if /sys does not tell
	GOMAXPROCS    int    `json:"gomaxprocs"`
	CacheLine     int    `json:"cache_line_bytes"`
	L1D           int    `json:"l1d_bytes"`
	L2            int    `json:"l2_bytes"`
	L3            int    `json:"l3_bytes"`
	CRC32C        bool   `json:"crc32c_hw"` // SSE4.2 (amd64) or ARMv8 CRC32
	AVX2          bool   `json:"avx2"`
	MemoryBytes   int64  `json:"memory_bytes"`
	Kernel        string `json:"kernel"`
	Go            string `json:"go"`
	OS            string `json:"os"`
	Arch          string `json:"arch"`
}

// Machine reads the hardware of this machine.
func Machine() Hardware {
	c := cpuid.CPU
	h := Hardware{
		CPU: c.BrandName, PhysicalCores: c.PhysicalCores, LogicalCores: c.LogicalCores,
		CPUs: runtime.NumCPU(), Cores: cores("/sys/devices/system/cpu"),
		GOMAXPROCS: runtime.GOMAXPROCS(0), CacheLine: c.CacheLine,
		L1D: c.Cache.L1D, L2: c.Cache.L2, L3: c.Cache.L3,
		CRC32C: c.Supports(cpuid.SSE42) || c.Supports(cpuid.CRC32), AVX2: c.Supports(cpuid.AVX2),
		Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(f) >= 2 {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			h.MemoryBytes = kb << 10
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}

// cores counts the physical cores of the CPUs this process may run on: the
// distinct (package, core) pairs of their topology under sysfs, or 0 where
// that cannot be read.
func cores(sysfs string) int {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return 0
	}
	type core struct{ pkg, id string }
	seen := map[core]bool{}
	for cpu, left := 0, allowed.Count(); left > 0; cpu++ {
		if !allowed.IsSet(cpu) {
			continue
		}
		left--
		dir := filepath.Join(sysfs, "cpu"+strconv.Itoa(cpu), "topology")
		pkg, err1 := os.ReadFile(filepath.Join(dir, "physical_package_id"))
		id, err2 := os.ReadFile(filepath.Join(dir, "core_id"))
		if err1 != nil || err2 != nil {
			return 0
		}
		seen[core{strings.TrimSpace(string(pkg)), strings.TrimSpace(string(id))}] = true
	}
	return len(seen)
}

// PeakRSS is the process's peak resident set size in bytes (VmHWM), or 0
// where /proc does not tell.
func PeakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
