package wal

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	upstream "github.com/tidwall/wal"
)

// dirFiles returns a directory's files and their bytes.
func dirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte, len(ents))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func sameFiles(t *testing.T, step string, want, got string) {
	t.Helper()
	w, g := dirFiles(t, want), dirFiles(t, got)
	if len(w) != len(g) {
		t.Fatalf("%s: upstream has %d files, the fork %d", step, len(w), len(g))
	}
	for name, b := range w {
		if !bytes.Equal(b, g[name]) {
			t.Fatalf("%s: file %s differs (upstream %d bytes, fork %d)", step, name, len(b), len(g[name]))
		}
	}
}

// TestSameFilesAsUpstream drives upstream tidwall/wal and the fork through
// the same random writes, rolls, front truncations and reopens, and
// compares the directories byte for byte after every step.
func TestSameFilesAsUpstream(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		upDir, forkDir := t.TempDir(), t.TempDir()
		const segSize = 4096
		openUp := func() *upstream.Log {
			u, err := upstream.Open(upDir, &upstream.Options{NoSync: true, SegmentSize: segSize, AllowEmpty: true, NoCopy: true})
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
		openFork := func() *Log {
			f, err := Open(forkDir, &Options{NoSync: true, SegmentSize: segSize})
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
		u, f := openUp(), openFork()
		var ub upstream.Batch
		var fb Batch
		for step := 0; step < 300; step++ {
			last, _ := u.LastIndex()
			switch r := rng.IntN(20); {
			case r < 16: // a batch of entries
				n := 1 + rng.IntN(12)
				for i := 0; i < n; i++ {
					data := bytes.Repeat([]byte{byte(step)}, rng.IntN(1500))
					ub.Write(last+uint64(i)+1, data)
					fb.Write(last+uint64(i)+1, data)
				}
				if err := u.WriteBatch(&ub); err != nil {
					t.Fatal(err)
				}
				if err := f.WriteBatch(&fb); err != nil {
					t.Fatal(err)
				}
			case r < 18: // truncate the front, anywhere, the log's end included
				first, _ := u.FirstIndex()
				idx := first + uint64(rng.IntN(int(last-first+2)))
				if rng.IntN(2) == 0 { // at a segment's start, as the log truncates
					idx = f.segments[rng.IntN(len(f.segments))].index
				}
				if err := u.TruncateFront(idx); err != nil {
					t.Fatal(err)
				}
				if err := f.TruncateFront(idx); err != nil {
					t.Fatal(err)
				}
			default: // close and reopen
				if err := u.Close(); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				u, f = openUp(), openFork()
			}
			uf, _ := u.FirstIndex()
			ul, _ := u.LastIndex()
			ff, _ := f.FirstIndex()
			fl, _ := f.LastIndex()
			if uf != ff || ul != fl {
				t.Fatalf("seed %d step %d: upstream holds [%d,%d], the fork [%d,%d]", seed, step, uf, ul, ff, fl)
			}
			sameFiles(t, "step", upDir, forkDir)
		}
		u.Close()
		f.Close()
	}
}

// TestUpstreamOpensForkFiles: tidwall/wal reads back every entry the fork
// wrote.
func TestUpstreamOpensForkFiles(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(dir, &Options{NoSync: true, SegmentSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var b Batch
	entry := func(i uint64) []byte { return bytes.Repeat([]byte{byte(i)}, int(i%300)) }
	for i := uint64(1); i <= 200; i++ {
		b.Write(i, entry(i))
		if i%7 == 0 {
			if err := f.WriteBatch(&b); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.WriteBatch(&b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	u, err := upstream.Open(dir, &upstream.Options{NoSync: true, SegmentSize: 1000, AllowEmpty: true})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for i := uint64(1); i <= 200; i++ {
		got, err := u.Read(i)
		if err != nil {
			t.Fatal(i, err)
		}
		if !bytes.Equal(got, entry(i)) {
			t.Fatalf("entry %d: %d bytes, want %d", i, len(got), len(entry(i)))
		}
	}
}

func TestOpenRefusesTornTail(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b Batch
	b.Write(1, []byte("hello"))
	b.Write(2, []byte("world"))
	if err := f.WriteBatch(&b); err != nil {
		t.Fatal(err)
	}
	f.Close()
	name := filepath.Join(dir, SegmentName(1))
	if err := os.Truncate(name, 9); err != nil { // inside "world"
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a torn tail: %v, want ErrCorrupt", err)
	}
	if err := os.Truncate(name, 6); err != nil { // just "hello"
		t.Fatal(err)
	}
	f, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if last, _ := f.LastIndex(); last != 1 {
		t.Fatalf("LastIndex %d, want 1", last)
	}
	b.Write(2, []byte("again"))
	if err := f.WriteBatch(&b); err != nil {
		t.Fatal(err)
	}
}

// TestOpenFinishesTruncation: a crash after a truncation's START file was
// written leaves it to Open, which deletes the older segments and renames
// START, like upstream.
func TestOpenFinishesTruncation(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(dir, &Options{SegmentSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	var b Batch
	for i := uint64(1); i <= 4; i++ {
		b.Write(i, []byte("0123456789"))
	}
	if err := f.WriteBatch(&b); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Segments 1..4 plus the empty 5; a START at 3 as a crash would leave it.
	if err := os.WriteFile(filepath.Join(dir, SegmentName(3)+".START"), []byte("\x0a0123456789"), 0o640); err != nil {
		t.Fatal(err)
	}
	f, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first, _ := f.FirstIndex()
	last, _ := f.LastIndex()
	if first != 3 || last != 4 {
		t.Fatalf("after Open: [%d,%d], want [3,4]", first, last)
	}
	var names []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 3 || names[0] != SegmentName(3) {
		t.Fatalf("files %v, want segments 3, 4 and 5", names)
	}
}

func TestClosed(t *testing.T) {
	f, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var b Batch
	b.Write(1, nil)
	if err := f.WriteBatch(&b); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteBatch after Close: %v", err)
	}
	if err := f.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := f.LastIndex(); !errors.Is(err, ErrClosed) {
		t.Fatalf("LastIndex after Close: %v", err)
	}
}

func TestOutOfOrder(t *testing.T) {
	f, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b Batch
	b.Write(2, []byte("x"))
	if err := f.WriteBatch(&b); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("entry 2 first: %v", err)
	}
	if err := f.TruncateFront(5); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("TruncateFront past the end: %v", err)
	}
}

// TestWriteBatchAllocs: appending allocates nothing once the batch's
// buffers have grown (between rolls: a roll opens a file).
func TestWriteBatchAllocs(t *testing.T) {
	f, err := Open(t.TempDir(), &Options{NoSync: true, SegmentSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := make([]byte, 64<<10)
	var b Batch
	next := uint64(1)
	write := func() {
		for i := 0; i < 4; i++ {
			b.Write(next, data)
			next++
		}
		if err := f.WriteBatch(&b); err != nil {
			t.Fatal(err)
		}
	}
	write()
	if n := testing.AllocsPerRun(100, write); n != 0 {
		t.Fatalf("%.1f allocs per WriteBatch, want 0", n)
	}
}

// BenchmarkWriteBatch compares the fork and upstream on the log's shape of
// writes: one 64 KiB entry (a record batch) per WriteBatch.
func BenchmarkWriteBatch(b *testing.B) {
	data := bytes.Repeat([]byte("r"), 64<<10)
	b.Run("fork", func(b *testing.B) {
		f, err := Open(b.TempDir(), &Options{NoSync: true, SegmentSize: 16 << 20})
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		var batch Batch
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for i := uint64(1); b.Loop(); i++ {
			batch.Write(i, data)
			if err := f.WriteBatch(&batch); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("upstream", func(b *testing.B) {
		u, err := upstream.Open(b.TempDir(), &upstream.Options{NoSync: true, SegmentSize: 16 << 20, NoCopy: true})
		if err != nil {
			b.Fatal(err)
		}
		defer u.Close()
		var batch upstream.Batch
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for i := uint64(1); b.Loop(); i++ {
			batch.Write(i, data)
			if err := u.WriteBatch(&batch); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRolledCoversEveryRoll: Rolled is nil until a segment rolls, and its
// Wait, called while writes continue, returns once all rolled segments are
// synced and closed.
func TestRolledCoversEveryRoll(t *testing.T) {
	f, err := Open(t.TempDir(), &Options{NoSync: true, SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Rolled() != nil {
		t.Fatal("Rolled before any roll is not nil")
	}
	data := make([]byte, 1000)
	var b Batch
	done := make(chan error, 100)
	for i := uint64(1); i <= 100; i++ {
		b.Write(i, data)
		if err := f.WriteBatch(&b); err != nil {
			t.Fatal(err)
		}
		r := f.Rolled()
		go func() { done <- r.Wait() }()
	}
	for i := 0; i < 100; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got := len(f.segments); got != 21 { // the 5th entry of 1002 bytes reaches 4096: 20 full, 1 empty
		t.Fatalf("%d segments, want 21", got)
	}
}

// TestBeginEndMatchesWrite: an entry built in place through Begin and End
// encodes as Write encodes it, whatever the length's uvarint size.
func TestBeginEndMatchesWrite(t *testing.T) {
	var a, b Batch
	for i, n := range []int{0, 1, 127, 128, 16383, 16384, 1<<21 - 1, 1 << 21, 3} {
		data := bytes.Repeat([]byte{byte('a' + i)}, n)
		a.Write(uint64(i+1), data)
		buf := b.Begin()
		buf = append(buf, data...)
		b.End(uint64(i+1), buf)
		if !bytes.Equal(a.data, b.data) || len(a.entries) != len(b.entries) || a.entries[i] != b.entries[i] {
			t.Fatalf("entry of %d bytes: Begin/End encodes differently from Write", n)
		}
	}
}

// TestRecoverEnd: an END file replaces the segments from its index on, and
// leftover temp files go; both START and END at once is corrupt.
func TestRecoverEnd(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	for i := uint64(1); i <= 4; i++ {
		write(SegmentName(i), "\x01x")
	}
	write(SegmentName(3)+".END", "\x01y")
	write(SegmentName(2)+".START.tmp", "partial")
	write(SegmentName(2)+".TEMP", "partial")
	if err := Recover(dir); err != nil {
		t.Fatal(err)
	}
	idxs, err := Segments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(idxs, []uint64{1, 2, 3}) {
		t.Fatalf("segments %v, want [1 2 3]", idxs)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, SegmentName(3))); string(b) != "\x01y" {
		t.Fatalf("segment 3 holds %q, want the END file's bytes", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Fatalf("%d files left, want the 3 segments", len(ents))
	}
	write(SegmentName(2)+".START", "")
	write(SegmentName(3)+".END", "")
	if err := Recover(dir); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("START and END at once: %v", err)
	}
}
