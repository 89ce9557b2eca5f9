package log

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// sameRecords fails unless a and b are the same records, byte for byte,
// telling nil from empty keys, values and header values.
func sameRecords(t *testing.T, a, b []Record) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d records, want %d", len(a), len(b))
	}
	same := func(x, y []byte) bool { return (x == nil) == (y == nil) && bytes.Equal(x, y) }
	for i := range a {
		x, y := &a[i], &b[i]
		ok := x.Partition == y.Partition && x.Offset == y.Offset && x.TimestampMs == y.TimestampMs &&
			same(x.Key, y.Key) && same(x.Value, y.Value) && len(x.Headers) == len(y.Headers)
		for j := 0; ok && j < len(x.Headers); j++ {
			ok = same(x.Headers[j].Key, y.Headers[j].Key) && same(x.Headers[j].Value, y.Headers[j].Value)
		}
		if !ok {
			t.Fatalf("record %d: %+v, want %+v", i, *x, *y)
		}
	}
}

// TestMappedReaderReadsWhatPreadReads: over small segments, batches of
// 1 to 500 records, records with nulls and headers, an entry larger than
// the map window, and reads of every size from many offsets, a mapped
// reader returns exactly what a pread reader does.
func TestMappedReaderReadsWhatPreadReads(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "m", TopicConfig{Partitions: 1, SegmentBytes: 256 << 10, Retention: -1, MaxRecordBytes: 2 * mapWindowBytes}, 0)
	rng := rand.New(rand.NewPCG(5, 6))
	big := false
	for i := 0; i < 20000; {
		n := 1 + rng.IntN(500)
		recs := make([]Record, n)
		for j := range recs {
			recs[j] = rec(i + j)
			switch rng.IntN(20) {
			case 0:
				recs[j].Key = nil
			case 1:
				recs[j].Value = nil
			case 2:
				recs[j].Headers = []Header{{Key: []byte("h"), Value: []byte("v")}, {Key: []byte("n")}}
			}
		}
		if i >= 10000 && !big { // one entry past the map window, in its own segment
			recs = []Record{{Value: bytes.Repeat([]byte("big"), (mapWindowBytes+1<<20)/3)}}
			n, big = 1, true
		}
		if _, err := p.Append(recs, AcksLeader); err != nil {
			t.Fatal(err)
		}
		i += n
	}
	hw := p.HighWatermark()
	want := readRecords(t, p.NewReader, 0, 1024)
	for _, per := range []int{1, 7, 100, 1024, 5000} {
		sameRecords(t, readRecords(t, p.NewMappedReader, 0, per), want)
	}
	for range 30 {
		from := rng.Int64N(hw)
		sameRecords(t, readRecords(t, p.NewMappedReader, from, 1+rng.IntN(300)), want[from:])
	}
}

// TestMappedReaderFollowsAppends: reading at the end of a growing active
// segment (the mapping ends where the file ended when it was made), a
// mapped reader sees each append and nothing half-written.
func TestMappedReaderFollowsAppends(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "m", TopicConfig{Partitions: 1, SegmentBytes: 1 << 20, Retention: -1}, 0)
	r, err := p.NewMappedReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []Record
	buf := make([]Record, 0, 64)
	for i := 0; i < 30000; i += 97 {
		appendN(t, p, i, 97, 97, AcksLeader)
		for r.Offset() < p.HighWatermark() {
			if buf, err = r.Read(buf[:0]); err != nil {
				t.Fatal(err)
			}
			got = appendClones(got, buf)
		}
	}
	sameRecords(t, got, readRecords(t, p.NewReader, 0, 1024))
}

// TestMappedReaderRetention: when retention deletes the segment a mapped
// reader is reading (its window still mapped), the next Read reports the
// offsets gone (ErrOffsetOutOfRange), as Read does for any reader whose
// offset fell below the log start.
func TestMappedReaderRetention(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "m", TopicConfig{Partitions: 1, SegmentBytes: 64 << 10, RetentionBytes: 256 << 10, Retention: -1}, 0)
	appendN(t, p, 0, 2000, 100, AcksLeader)
	r, err := p.NewMappedReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]Record, 0, 10)
	if buf, err = r.Read(buf[:0]); err != nil || len(buf) == 0 {
		t.Fatalf("Read: %d records, %v", len(buf), err)
	}
	first := appendClones(nil, buf[:1])[0]
	appendN(t, p, 2000, 20000, 100, AcksLeader)
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if p.LogStartOffset() == 0 {
		t.Fatal("retention deleted nothing")
	}
	if want := rec(0); first.Offset != 0 || !bytes.Equal(first.Value, want.Value) {
		t.Fatalf("first record %+v", first)
	}
	for {
		buf, err = r.Read(buf[:0])
		if err != nil {
			break
		}
		if len(buf) == 0 {
			t.Fatal("Read returned nothing before the high watermark")
		}
	}
	if !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Read after retention: %v, want ErrOffsetOutOfRange", err)
	}
}

// TestMappedReaderFaultIsRecoverable: a file cut under a mapped reader's
// records (another process repairing a failed write) makes touching them
// fault; with debug.SetPanicOnFault the fault is a panic with an address,
// which the pipeline's workers recover into an error.
func TestMappedReaderFaultIsRecoverable(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "m", TopicConfig{Partitions: 1, Retention: -1}, 0)
	appendN(t, p, 0, 3000, 1000, AcksLeader)
	r, err := p.NewMappedReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	recs, err := r.Read(make([]Record, 0, 3000))
	if err != nil || len(recs) == 0 {
		t.Fatalf("Read: %d records, %v", len(recs), err)
	}
	last := recs[len(recs)-1]
	segs, _ := filepath.Glob(filepath.Join(l.Dir(), "topics", "m", "0", "0*"))
	if len(segs) != 1 {
		t.Fatalf("segment files %v", segs)
	}
	if err := os.Truncate(segs[0], 0); err != nil {
		t.Fatal(err)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	fault := func() (b byte, addr uintptr) {
		defer func() {
			if f, ok := recover().(interface{ Addr() uintptr }); ok {
				addr = f.Addr()
			}
		}()
		return last.Value[len(last.Value)-1], 0
	}
	if _, addr := fault(); addr == 0 {
		t.Fatal("touching a cut record did not fault")
	}
}
