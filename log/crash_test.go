package log

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The crash tests re-execute the test binary: the child appends and
// prints each acknowledged offset, the parent kills it.
const childEnv = "FASTFLOW_LOG_CRASH_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "append":
		crashChildAppend()
		return
	case "fsize":
		crashChildFileSize()
		return
	case "fsize-exit":
		crashChildFileSizeExit()
		return
	case "clean":
		crashChildClean()
		return
	}
	os.Exit(m.Run())
}

// crashRecord is the record with offset i: its content can be checked.
func crashRecord(i int64) Record {
	return Record{TimestampMs: 1795341600000 + i, Key: fmt.Appendf(nil, "k%d", i%13),
		Value: fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, i, strings.Repeat("p", int(i%97)))}
}

func childOpen() *Partition {
	return childOpenTopic("crash", TopicConfig{Partitions: 1, SegmentBytes: 64 << 10}, Options{CleanupInterval: -1})
}

// childOpenTopic opens $DIR and partition 0 of topic name, creating the
// topic with cfg if it is not there; a failure ends the child.
func childOpenTopic(name string, cfg TopicConfig, opts Options) *Partition {
	l, err := Open(os.Getenv("DIR"), opts)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	t, err := l.Topic(name)
	if err != nil {
		t, err = l.CreateTopic(name, cfg)
	}
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	p, err := t.Partition(0)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	return p
}

// crashChildAppend appends batches forever, printing "ACK last" after each.
func crashChildAppend() {
	acks, _ := ParseAcks(os.Getenv("ACKS"))
	appendForever(childOpen(), acks, 1, nil)
}

// crashChildClean appends batches to a topic whose cleanup policy is
// $CLEANUP and runs the partition's cleanup every 25 batches, printing
// "ACK last" after each batch and "CLEAN" before each cleanup, so that the
// parent can kill it in the middle of one.
func crashChildClean() {
	cfg := TopicConfig{Partitions: 1, SegmentBytes: 16 << 10, Cleanup: os.Getenv("CLEANUP"), RetentionBytes: 64 << 10}
	if cfg.Cleanup == CleanupCompact {
		cfg.RetentionBytes = 0
	}
	p := childOpenTopic("clean", cfg, Options{CleanupInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	appendForever(p, AcksAll, 2, func(batch int, out *bufio.Writer) {
		if batch%25 != 0 {
			return
		}
		fmt.Fprintln(out, "CLEAN")
		out.Flush()
		if err := p.Cleanup(); err != nil {
			fmt.Fprintln(out, "ERR", err)
			out.Flush()
			os.Exit(3)
		}
	})
}

// appendForever appends batches of crashRecords of random sizes to p,
// printing "START next" first and "ACK last" after each batch, then
// calling after, if not nil, with the batch's number (from 1).
func appendForever(p *Partition, acks Acks, seed uint64, after func(batch int, out *bufio.Writer)) {
	out := bufio.NewWriter(os.Stdout)
	next := p.HighWatermark()
	fmt.Fprintln(out, "START", next)
	out.Flush()
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), seed))
	for batch := 1; ; batch++ {
		n := 1 + rng.IntN(40)
		recs := make([]Record, n)
		for i := range recs {
			recs[i] = crashRecord(next + int64(i))
		}
		base, err := p.Append(recs, acks)
		if err != nil || base != next {
			fmt.Fprintln(out, "ERR", base, err)
			out.Flush()
			os.Exit(3)
		}
		next += int64(n)
		fmt.Fprintln(out, "ACK", next-1)
		if after != nil {
			after(batch, out)
		}
		out.Flush()
	}
}

// verifyCrash checks offsets [0, upTo) hold exactly crashRecord(i).
func verifyCrash(t *testing.T, p *Partition, upTo int64) {
	t.Helper()
	r, err := p.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]Record, 0, 500)
	want := int64(0)
	for want < upTo {
		buf, err = r.Read(buf[:0])
		if err != nil {
			t.Fatalf("reading offset %d: %v", want, err)
		}
		if len(buf) == 0 {
			t.Fatalf("acknowledged offset %d missing: high watermark %d", want, p.HighWatermark())
		}
		for _, rc := range buf {
			w := crashRecord(rc.Offset)
			if rc.Offset != want || !bytes.Equal(rc.Value, w.Value) || !bytes.Equal(rc.Key, w.Key) || rc.TimestampMs != w.TimestampMs {
				t.Fatalf("offset %d: got %d %q=%q", want, rc.Offset, rc.Key, rc.Value)
			}
			want++
		}
	}
}

// TestKill9 kills an appending process at random moments, for acks=1 and
// acks=all, and checks after each kill that every acknowledged record is
// there, the tail is clean, and appends continue at the next offset.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	for _, acks := range []string{"1", "all"} {
		t.Run("acks="+acks, func(t *testing.T) {
			dir := t.TempDir()
			var acked int64 = -1
			for round := 0; round < 6; round++ {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), childEnv+"=append", "DIR="+dir, "ACKS="+acks)
				stdout, _ := cmd.StdoutPipe()
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(stdout)
				// Kill after a random number of acknowledgements.
				killAt := 20 + rand.IntN(400)
				for n := 0; sc.Scan(); n++ {
					f := strings.Fields(sc.Text())
					switch f[0] {
					case "START":
						// The reopened partition continues right after the last acknowledged offset, or
						// later (acks=1 writes that were not yet acknowledged may have survived).
						start, _ := strconv.ParseInt(f[1], 10, 64)
						if start <= acked {
							t.Fatalf("round %d: reopened at %d, but %d was acknowledged", round, start, acked)
						}
					case "ACK":
						acked, _ = strconv.ParseInt(f[1], 10, 64)
					default:
						t.Fatalf("child: %s", sc.Text())
					}
					if n == killAt {
						cmd.Process.Signal(syscall.SIGKILL)
						break
					}
				}
				cmd.Wait()
				l := testLog(t, dir)
				p := mustPartition(t, l, "crash", TopicConfig{}, 0)
				verifyCrash(t, p, acked+1)
				l.Close()
			}
			if acked < 100 {
				t.Fatalf("only %d records acknowledged over all rounds", acked+1)
			}
			// Reopen as writer, append, and read everything back.
			l := testLog(t, dir)
			defer l.Close()
			p := mustPartition(t, l, "crash", TopicConfig{}, 0)
			next := p.HighWatermark()
			if _, err := p.Append([]Record{crashRecord(next)}, AcksAll); err != nil {
				t.Fatal(err)
			}
			verifyCrash(t, p, next+1)
		})
	}
}

// crashChildFileSize appends until writes fail for RLIMIT_FSIZE (the
// kernel's EFBIG, a stand-in for a full disk), then lifts the limit and
// appends again.
func crashChildFileSize() {
	signal.Ignore(syscall.SIGXFSZ) // else the kernel kills us at the limit
	p := childOpen()
	limit := uint64(40 << 10) // below the 64 KiB segment size
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: unix.RLIM_INFINITY}); err != nil {
		fmt.Println("ERR setrlimit", err)
		os.Exit(3)
	}
	next := p.HighWatermark()
	failures := 0
	for i := 0; ; i++ {
		recs := make([]Record, 37)
		for j := range recs {
			recs[j] = crashRecord(next + int64(j))
		}
		acks := []Acks{AcksLeader, AcksAll}[i%2]
		base, err := p.Append(recs, acks)
		if err != nil {
			failures++
			fmt.Println("FAIL", err)
			if failures == 3 {
				// Space is back.
				unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY})
			}
			if failures > 3 {
				fmt.Println("ERR still failing after the limit was lifted:", err)
				os.Exit(3)
			}
			continue
		}
		if base != next {
			fmt.Println("ERR base", base, "want", next)
			os.Exit(3)
		}
		next += int64(len(recs))
		fmt.Println("ACK", next-1)
		if failures >= 3 && next > 6000 {
			break
		}
	}
	os.Exit(0)
}

// crashChildFileSizeExit appends under RLIMIT_FSIZE until a write fails,
// and exits without appending again, as a produce command does: with
// acks=1 the append that failed is reported, with acks=0 (ACKS=0) the
// appends return once queued and the failed write's records are counted
// in Stats().Lost. It prints what was acknowledged and lost.
func crashChildFileSizeExit() {
	signal.Ignore(syscall.SIGXFSZ)
	l, err := Open(os.Getenv("DIR"), Options{CleanupInterval: -1})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	// Segments larger than the limit, batches of several 64 KiB frames:
	// the write that fails leaves complete frames before the torn one.
	tp, err := l.CreateTopic("exit", TopicConfig{Partitions: 1, SegmentBytes: 1 << 20})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	p, _ := tp.Partition(0)
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: 300 << 10, Max: unix.RLIM_INFINITY}); err != nil {
		fmt.Println("ERR setrlimit", err)
		os.Exit(3)
	}
	acks, batch := AcksLeader, 1500
	if os.Getenv("ACKS") == "0" {
		acks, batch = AcksNone, 100
	}
	var acked int64
	for {
		recs := make([]Record, batch)
		for j := range recs {
			recs[j] = crashRecord(acked + int64(j))
		}
		if _, err := p.Append(recs, acks); err != nil {
			fmt.Println("FAIL", err)
			break
		}
		acked += int64(batch)
		if acks == AcksNone && acked >= 50*int64(batch) {
			if err := p.Flush(); err != nil {
				fmt.Println("FAIL", err)
			}
			break
		}
	}
	fmt.Println("ACKED", acked, "LOST", p.Stats().Lost)
	l.Close()
	os.Exit(0)
}

// TestWriteErrorThenExit: a process whose write fails and that exits
// without appending again leaves no record of the failed write for
// readers: the partition holds exactly what was acknowledged with acks=1,
// and with acks=0 what was queued less what Stats().Lost counts.
// TestKill9WhileCleaning kills a process that appends and cleans, often
// in the middle of a compaction's rewrite or a retention's truncation,
// and checks after each kill that no acknowledged record is lost but
// those the policy removes, that every record left is the one written
// at its offset, and that the cleanup left no file behind.
func TestKill9WhileCleaning(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	for _, policy := range []string{CleanupCompact, CleanupDelete} {
		t.Run(policy, func(t *testing.T) {
			dir := t.TempDir()
			var acked int64 = -1
			cleans, held := 0, 0
			for round := 0; round < 8; round++ {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), childEnv+"=clean", "DIR="+dir, "CLEANUP="+policy)
				stdout, _ := cmd.StdoutPipe()
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(stdout)
				// Kill a little after the second or third cleanup starts.
				killAfter := 2 + rand.IntN(2)
				for sc.Scan() {
					f := strings.Fields(sc.Text())
					switch f[0] {
					case "START":
						if start, _ := strconv.ParseInt(f[1], 10, 64); start != acked+1 {
							t.Fatalf("round %d: reopened at %d, last acknowledged %d", round, start, acked)
						}
						continue
					case "ACK":
						acked, _ = strconv.ParseInt(f[1], 10, 64)
						continue
					case "CLEAN":
						cleans++
						if killAfter--; killAfter > 0 {
							continue
						}
						time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
						cmd.Process.Signal(syscall.SIGKILL)
					default:
						t.Fatalf("child: %s", sc.Text())
					}
					break
				}
				cmd.Wait()
				acked, held = verifyCleaned(t, dir, policy, acked)
			}
			if cleans < 16 {
				t.Fatalf("only %d cleanups started", cleans)
			}
			if policy == CleanupCompact && int64(held) > acked/2 {
				t.Fatalf("compaction left %d of %d records", held, acked+1)
			}
			if policy == CleanupDelete {
				l := testLog(t, dir)
				defer l.Close()
				if p := mustPartition(t, l, "clean", TopicConfig{}, 0); p.LogStartOffset() == 0 {
					t.Fatalf("retention deleted nothing of %d records", p.HighWatermark())
				}
			}
		})
	}
}

// verifyCleaned opens the log in dir after a kill and checks partition
// clean/0 (see TestKill9WhileCleaning). It returns the last offset there
// (the child may have appended past the last acknowledgement read) and
// how many records the partition holds.
func verifyCleaned(t *testing.T, dir, policy string, acked int64) (int64, int) {
	t.Helper()
	l := testLog(t, dir)
	defer l.Close()
	p := mustPartition(t, l, "clean", TopicConfig{}, 0)
	if p.HighWatermark() <= acked {
		t.Fatalf("high watermark %d, last acknowledged %d", p.HighWatermark(), acked)
	}
	// Becoming the writer completes or undoes what the kill cut short.
	acked = p.HighWatermark()
	if _, err := p.Append([]Record{crashRecord(acked)}, AcksAll); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if n := e.Name(); n != "lock" && n != stateFile && !(len(n) == 20 && strings.Trim(n, "0123456789") == "") {
			t.Errorf("left behind in %s: %s", p.dir, n)
		}
	}
	r, err := p.NewReader(p.LogStartOffset())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	latest := map[string]int64{}
	last, held := p.LogStartOffset()-1, 0
	for r.Offset() < p.HighWatermark() {
		recs, err := r.Read(make([]Record, 0, 1000))
		if err != nil || len(recs) == 0 {
			t.Fatalf("read at %d of %d: %v", r.Offset(), p.HighWatermark(), err)
		}
		for _, rc := range recs {
			w := crashRecord(rc.Offset)
			if rc.Offset <= last || !bytes.Equal(rc.Value, w.Value) || !bytes.Equal(rc.Key, w.Key) || rc.TimestampMs != w.TimestampMs {
				t.Fatalf("offset %d after %d: got %q=%q", rc.Offset, last, rc.Key, rc.Value)
			}
			if policy == CleanupDelete && rc.Offset != last+1 {
				t.Fatalf("offset %d follows %d: retention removes only a prefix", rc.Offset, last)
			}
			last = rc.Offset
			latest[string(rc.Key)] = rc.Offset
			held++
		}
	}
	if policy == CleanupCompact {
		if p.LogStartOffset() != 0 {
			t.Fatalf("log start %d: compaction moved it", p.LogStartOffset())
		}
		// Each key's last acknowledged record is there.
		for i := max(0, acked-12); i <= acked; i++ {
			if k := crashRecord(i).Key; latest[string(k)] != i {
				t.Fatalf("key %s: latest record at %d, want %d", k, latest[string(k)], i)
			}
		}
	}
	return acked, held
}

func TestWriteErrorThenExit(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	for _, acks := range []string{"1", "0"} {
		t.Run("acks="+acks, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"=fsize-exit", "DIR="+dir, "ACKS="+acks)
			cmd.WaitDelay = time.Minute
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("child: %v\n%s\n%s", err, out, stderr.String())
			}
			var acked, lost int64
			failed := false
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				switch {
				case strings.HasPrefix(line, "FAIL") && strings.Contains(line, "file too large"):
					failed = true
				case strings.HasPrefix(line, "ACKED"):
					fmt.Sscanf(line, "ACKED %d LOST %d", &acked, &lost)
				default:
					t.Fatalf("child: %s", line)
				}
			}
			// With acks=0 the write that fails may be a background one,
			// which no call returns: Lost tells.
			if acks == "1" && !failed || acked == 0 || (acks == "0") != (lost > 0) {
				t.Fatalf("child: %s", out)
			}
			l := testLog(t, dir)
			defer l.Close()
			p := mustPartition(t, l, "exit", TopicConfig{}, 0)
			if p.HighWatermark() != acked-lost {
				t.Fatalf("high watermark %d: acknowledged %d, lost %d", p.HighWatermark(), acked, lost)
			}
			if acks == "1" {
				verifyCrash(t, p, acked)
			} else {
				// Offsets whose records were lost went to the next records
				// (nothing had read them): each record is one the child
				// queued, whole, in the order it queued them.
				r, _ := p.NewReader(0)
				defer r.Close()
				// A Read's records are valid until the next Read: each
				// batch is checked as it comes.
				last, read := int64(-1), int64(0)
				for read < p.HighWatermark() {
					recs, err := r.Read(make([]Record, 0, 1000))
					if err != nil || len(recs) == 0 {
						t.Fatalf("read at %d of %d: %v", read, p.HighWatermark(), err)
					}
					for _, rc := range recs {
						var n int64
						fmt.Sscanf(string(rc.Value), `{"n":%d`, &n)
						w := crashRecord(n)
						if n <= last || !bytes.Equal(rc.Value, w.Value) || !bytes.Equal(rc.Key, w.Key) {
							t.Fatalf("offset %d: %q=%q after record %d", rc.Offset, rc.Key, rc.Value, last)
						}
						last = n
					}
					read += int64(len(recs))
				}
				if read != acked-lost {
					t.Fatalf("read %d records, want %d", read, acked-lost)
				}
			}
			t.Logf("acknowledged %d, lost %d, high watermark %d", acked, lost, p.HighWatermark())
		})
	}
}

func TestWriteErrorThenRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=fsize", "DIR="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan struct{})
	time.AfterFunc(2*time.Minute, func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
		}
	})
	out, err := cmd.Output()
	close(done)
	if err != nil {
		t.Fatalf("child: %v\n%s\n%s", err, out, stderr.String())
	}
	var acked int64 = -1
	fails := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		switch f[0] {
		case "ACK":
			acked, _ = strconv.ParseInt(f[1], 10, 64)
		case "FAIL":
			fails++
			if !strings.Contains(line, "file too large") {
				t.Fatalf("unexpected failure: %s", line)
			}
		default:
			t.Fatalf("child: %s", line)
		}
	}
	if fails != 3 {
		t.Fatalf("%d failed appends, want 3", fails)
	}
	l := testLog(t, dir)
	defer l.Close()
	p := mustPartition(t, l, "crash", TopicConfig{}, 0)
	// Nothing of the failed appends survives: offsets are dense and every
	// record is the acknowledged one.
	if p.HighWatermark() != acked+1 {
		t.Fatalf("high watermark %d, last acknowledged %d", p.HighWatermark(), acked)
	}
	verifyCrash(t, p, acked+1)
}
