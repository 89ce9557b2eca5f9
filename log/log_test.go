package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/fastflow/fastflow/log/internal/wal"
)

// testLog opens a Log in a temp dir with the cleaner off.
func testLog(t testing.TB, dir string) *Log {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	l, err := Open(dir, Options{CleanupInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mustPartition(t testing.TB, l *Log, topic string, cfg TopicConfig, id int32) *Partition {
	t.Helper()
	tp, err := l.Topic(topic)
	if errors.Is(err, ErrUnknownTopic) {
		tp, err = l.CreateTopic(topic, cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	p, err := tp.Partition(id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func rec(i int) Record {
	return Record{
		TimestampMs: 1795341600000 + int64(i),
		Key:         fmt.Appendf(nil, "key-%d", i%7),
		Value:       fmt.Appendf(nil, `{"i":%d,"pad":"%s"}`, i, strings.Repeat("x", i%50)),
	}
}

func appendN(t testing.TB, p *Partition, from, n, batch int, acks Acks) {
	t.Helper()
	recs := make([]Record, 0, batch)
	for i := from; i < from+n; i++ {
		recs = append(recs, rec(i))
		if len(recs) == batch || i == from+n-1 {
			base, err := p.Append(recs, acks)
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(i + 1 - len(recs)); base != want {
				t.Fatalf("Append returned base %d, want %d", base, want)
			}
			recs = recs[:0]
		}
	}
}

// readAll reads p from offset to the high watermark.
func readAll(t testing.TB, p *Partition, from int64) []Record {
	t.Helper()
	return readRecords(t, p.NewReader, from, 100)
}

// readRecords reads p from offset from to its high watermark with a
// reader from newReader (NewReader or NewMappedReader), at most per
// records a Read, copying what it returns.
func readRecords(t testing.TB, newReader func(int64) (*Reader, error), from int64, per int) []Record {
	t.Helper()
	r, err := newReader(from)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []Record
	buf := make([]Record, 0, per)
	for r.Offset() < r.Partition().HighWatermark() {
		if buf, err = r.Read(buf[:0]); err != nil {
			t.Fatal(err)
		}
		if len(buf) == 0 {
			t.Fatalf("Read returned nothing at offset %d, high watermark %d", r.Offset(), r.Partition().HighWatermark())
		}
		out = appendClones(out, buf)
	}
	return out
}

// appendClones appends copies of recs to dst: their keys, values and
// headers no longer point into a reader's buffer or mapping.
func appendClones(dst, recs []Record) []Record {
	for _, rc := range recs {
		rc.Key, rc.Value = bytes.Clone(rc.Key), bytes.Clone(rc.Value)
		if rc.Headers != nil {
			hs := make([]Header, len(rc.Headers))
			for i, h := range rc.Headers {
				hs[i] = Header{Key: bytes.Clone(h.Key), Value: bytes.Clone(h.Value)}
			}
			rc.Headers = hs
		}
		dst = append(dst, rc)
	}
	return dst
}

func checkRecords(t testing.TB, got []Record, from, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d records, want %d", len(got), n)
	}
	for j, g := range got {
		i := from + j
		w := rec(i)
		if g.Offset != int64(i) || g.TimestampMs != w.TimestampMs || !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) {
			t.Fatalf("record %d: got offset %d ts %d %q=%q, want %d %q=%q", j, g.Offset, g.TimestampMs, g.Key, g.Value, i, w.Key, w.Value)
		}
	}
}

func TestAppendReadAcrossSegments(t *testing.T) {
	for _, acks := range []Acks{AcksNone, AcksLeader, AcksAll} {
		t.Run("acks="+acks.String(), func(t *testing.T) {
			dir := t.TempDir()
			l := testLog(t, dir)
			p := mustPartition(t, l, "events", TopicConfig{Partitions: 1, SegmentBytes: 8192}, 0)
			appendN(t, p, 0, 3000, 37, acks)
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			if p.Segments() < 5 {
				t.Fatalf("expected several segments, got %d", p.Segments())
			}
			checkRecords(t, readAll(t, p, 0), 0, 3000)
			checkRecords(t, readAll(t, p, 1234), 1234, 3000-1234)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); !errors.Is(err, ErrClosed) {
				t.Fatalf("second Close: %v", err)
			}
			// Reopen: everything is there, appends continue at the next offset.
			l = testLog(t, dir)
			defer l.Close()
			p = mustPartition(t, l, "events", TopicConfig{}, 0)
			if p.HighWatermark() != 3000 {
				t.Fatalf("high watermark after reopen %d", p.HighWatermark())
			}
			appendN(t, p, 3000, 500, 64, AcksLeader)
			checkRecords(t, readAll(t, p, 0), 0, 3500)
		})
	}
}

// A Read may stop inside a batch, and the next goes on from there (without
// checking and decoding the batch's first records again): the records come
// out the same whatever the pieces, with headers, across segments, with
// seeks inside the batch the reader stopped in, and with appends after.
func TestReadInPieces(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "pieces", TopicConfig{Partitions: 1, SegmentBytes: 64 << 10}, 0)
	appendN(t, p, 0, 5000, 1000, AcksLeader)
	hdrs := func(i int) []Header {
		return []Header{{Key: []byte("i"), Value: fmt.Appendf(nil, "%d", i)}, {Key: []byte("nil")}}
	}
	withHeaders := make([]Record, 300)
	for i := range withHeaders {
		withHeaders[i] = rec(5000 + i)
		withHeaders[i].Headers = hdrs(5000 + i)
	}
	if _, err := p.Append(withHeaders, AcksLeader); err != nil {
		t.Fatal(err)
	}
	const n = 5300
	if p.Segments() < 3 {
		t.Fatalf("want several segments, got %d", p.Segments())
	}
	check := func(t *testing.T, got []Record, from int) {
		t.Helper()
		checkRecords(t, got, from, len(got))
		for j, g := range got {
			if i := from + j; i >= 5000 && i < n && (len(g.Headers) != 2 || string(g.Headers[0].Value) != fmt.Sprint(i) || g.Headers[1].Value != nil) {
				t.Fatalf("record %d: headers %q", i, g.Headers)
			}
		}
	}
	for _, size := range []int{1, 7, 999, 1001} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			r, err := p.NewReader(0)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var got []Record
			buf := make([]Record, 0, size)
			for r.Offset() < n {
				if buf, err = r.Read(buf[:0]); err != nil || len(buf) == 0 {
					t.Fatalf("at %d: %d records, %v", r.Offset(), len(buf), err)
				}
				got = appendClones(got, buf)
			}
			if len(got) != n {
				t.Fatalf("%d records, want %d", len(got), n)
			}
			check(t, got, 0)
		})
	}
	r, err := p.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]Record, 0, 10)
	read := func(from int64, count int) {
		t.Helper()
		if buf, err = r.Read(buf[:0]); err != nil || len(buf) != count || len(buf) > 0 && buf[0].Offset != from {
			t.Fatalf("Read at %d: %d records from %v, want %d from %d", r.Offset(), len(buf), buf, count, from)
		}
		check(t, appendClones(nil, buf), int(from))
	}
	read(0, 10) // stops inside the first batch
	r.SeekOffset(500)
	read(500, 10) // ahead in the same batch
	r.SeekOffset(5)
	read(5, 10) // behind
	r.SeekOffset(r.Offset())
	read(15, 10) // where it is
	r.SeekOffset(5295)
	read(5295, 5) // to the end, inside the batch with headers
	appendN(t, p, n, 20, 20, AcksLeader)
	read(n, 10)
	read(n+10, 10)
}

func TestHeadersNullsAndTimestamps(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "h", TopicConfig{Partitions: 1}, 0)
	before := time.Now().UnixMilli()
	recs := []Record{
		{Key: nil, Value: []byte("v0"), Headers: []Header{{Key: []byte("trace"), Value: []byte("t1")}, {Key: []byte("n"), Value: nil}}},
		{Key: []byte("k"), Value: nil, TimestampMs: 42},
		{Key: []byte{}, Value: []byte{}, TimestampMs: 43},
	}
	if _, err := p.Append(recs, AcksLeader); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, p, 0)
	if got[0].Key != nil || string(got[0].Value) != "v0" || len(got[0].Headers) != 2 ||
		string(got[0].Headers[0].Key) != "trace" || string(got[0].Headers[0].Value) != "t1" || got[0].Headers[1].Value != nil {
		t.Fatalf("record 0: %+v", got[0])
	}
	if got[0].TimestampMs < before {
		t.Fatalf("zero timestamp not set to now: %d", got[0].TimestampMs)
	}
	if got[1].Value != nil || got[1].TimestampMs != 42 || string(got[1].Key) != "k" {
		t.Fatalf("record 1: %+v", got[1])
	}
	if got[2].Key == nil || got[2].Value == nil {
		t.Fatalf("empty key/value read back as null: %+v", got[2])
	}
}

func TestLogAppendTime(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "la", TopicConfig{Partitions: 1, TimestampType: TimestampAppend}, 0)
	before := time.Now().UnixMilli()
	if _, err := p.Append([]Record{{Value: []byte("a"), TimestampMs: 5}}, AcksLeader); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, p, 0); got[0].TimestampMs < before {
		t.Fatalf("LogAppendTime kept the producer's timestamp %d", got[0].TimestampMs)
	}
}

func TestOversizedRecord(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "big", TopicConfig{Partitions: 1, MaxRecordBytes: 1000}, 0)
	recs := []Record{{Value: []byte("small")}, {Value: bytes.Repeat([]byte("x"), 1001)}}
	if _, err := p.Append(recs, AcksLeader); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("oversized append: %v", err)
	} else if !strings.Contains(err.Error(), "1001 bytes") {
		t.Fatalf("error does not name the size: %v", err)
	}
	if p.HighWatermark() != 0 || p.Size() != 0 {
		t.Fatalf("something was written: hw %d size %d", p.HighWatermark(), p.Size())
	}
	// Exactly the limit is fine, and a multi-frame batch of large records too.
	big := make([]Record, 200)
	for i := range big {
		big[i] = Record{Value: bytes.Repeat([]byte{byte(i)}, 1000)}
	}
	if _, err := p.Append(big, AcksLeader); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, p, 0); len(got) != 200 || got[199].Value[0] != 199 {
		t.Fatalf("read back %d records", len(got))
	}
}

func TestOutOfRange(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "r", TopicConfig{Partitions: 1}, 0)
	appendN(t, p, 0, 10, 10, AcksLeader)
	for _, o := range []int64{-1, 11} {
		_, err := p.NewReader(o)
		var oe *OffsetOutOfRangeError
		if !errors.As(err, &oe) || !errors.Is(err, ErrOffsetOutOfRange) || oe.Start != 0 || oe.End != 10 {
			t.Fatalf("NewReader(%d): %v", o, err)
		}
	}
	r, err := p.NewReader(10)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Read(nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("read at the end: %d records, %v", len(got), err)
	}
}

func TestSeekTime(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "ts", TopicConfig{Partitions: 1, SegmentBytes: 4096}, 0)
	// Timestamps out of order: 100, 90, 110, 100, 120, ...
	var recs []Record
	ts := func(i int) int64 { return int64(100 + 10*(i/2) - 10*(i%2)) }
	for i := 0; i < 2000; i++ {
		recs = append(recs, Record{TimestampMs: ts(i), Value: fmt.Appendf(nil, "%d", i)})
	}
	for i := 0; i < len(recs); i += 50 {
		if _, err := p.Append(recs[i:i+50], AcksLeader); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []int64{0, 90, 95, 100, 101, 5000, 10085, 10090, 10091, 99999} {
		want := int64(2000)
		for i := range recs {
			if ts(i) >= q {
				want = int64(i)
				break
			}
		}
		got, err := p.OffsetForTime(q)
		if err != nil || got != want {
			t.Fatalf("OffsetForTime(%d) = %d, %v; want %d", q, got, err, want)
		}
	}
}

func TestTailWait(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "tail", TopicConfig{Partitions: 1}, 0)
	r, _ := p.NewReader(0)
	got := make(chan []Record)
	go func() {
		var all []Record
		buf := make([]Record, 0, 16)
		for len(all) < 100 {
			var err error
			buf, err = r.Poll(context.Background(), buf[:0])
			if err != nil {
				t.Error(err)
				break
			}
			for _, rc := range buf {
				rc.Value = bytes.Clone(rc.Value)
				rc.Key = bytes.Clone(rc.Key)
				all = append(all, rc)
			}
		}
		got <- all
	}()
	for i := 0; i < 100; i += 10 {
		appendN(t, p, i, 10, 10, AcksLeader)
	}
	checkRecords(t, <-got, 0, 100)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- r.Wait(ctx) }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel: %v", err)
	}
}

func TestAcksNoneLingers(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "a0", TopicConfig{Partitions: 1}, 0)
	appendN(t, p, 0, 10, 10, AcksNone)
	r, _ := p.NewReader(0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The linger timer writes them without any further call.
	if err := r.Wait(ctx); err != nil {
		t.Fatalf("acks=0 records never became readable: %v", err)
	}
	checkRecords(t, readAll(t, p, 0), 0, 10)
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "c", TopicConfig{Partitions: 1, SegmentBytes: 16384}, 0)
	const writers, perWriter = 8, 300
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Readers tail concurrently and check density and order.
	for rd := 0; rd < 2; rd++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _ := p.NewReader(0)
			buf := make([]Record, 0, 64)
			next := int64(0)
			for next < writers*perWriter {
				var err error
				buf, err = r.Poll(ctx, buf[:0])
				if err != nil {
					t.Error(err)
					return
				}
				for _, rc := range buf {
					if rc.Offset != next {
						t.Errorf("reader got offset %d, want %d", rc.Offset, next)
						return
					}
					next++
				}
			}
		}()
	}
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				acks := []Acks{AcksNone, AcksLeader, AcksAll}[i%3]
				r := []Record{{Key: []byte{byte(w)}, Value: fmt.Appendf(nil, "%d-%d", w, i)}}
				if _, err := p.Append(r, acks); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Each writer's records are in its order.
	last := map[byte]int{}
	for _, rc := range readAll(t, p, 0) {
		var w, i int
		fmt.Sscanf(string(rc.Value), "%d-%d", &w, &i)
		if prev, ok := last[byte(w)]; ok && i != prev+1 {
			t.Fatalf("writer %d: record %d after %d", w, i, prev)
		}
		last[byte(w)] = i
	}
}

// TestGroupCommit: concurrent acks=all appends share fsyncs. Every append
// returns only after an fsync that began after its write, and eight writers
// need far fewer fsyncs than appends.
func TestGroupCommit(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "gc", TopicConfig{Partitions: 1}, 0)
	const writers, each = 8, 100
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := p.Append([]Record{{Value: []byte("v")}}, AcksAll); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := p.Stats()
	if st.Appends != writers*each || st.Records != writers*each {
		t.Fatalf("stats %+v", st)
	}
	if st.Fsyncs > st.Appends/2 {
		t.Fatalf("%d fsyncs for %d concurrent acks=all appends: not shared", st.Fsyncs, st.Appends)
	}
	p.syncState.Lock()
	synced := p.synced
	p.syncState.Unlock()
	if synced != writers*each {
		t.Fatalf("synced up to %d of %d", synced, writers*each)
	}
	t.Logf("%d appends, %d fsyncs", st.Appends, st.Fsyncs)
}

func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	l := testLog(t, dir)
	p := mustPartition(t, l, "torn", TopicConfig{Partitions: 1}, 0)
	appendN(t, p, 0, 100, 10, AcksAll)
	l.Close()
	seg := filepath.Join(dir, "topics", "torn", "0", wal.SegmentName(1))
	st, _ := os.Stat(seg)
	// Cut every possible byte of the last batch.
	for cut := int64(1); cut < 60; cut += 7 {
		os.Truncate(seg, st.Size()-cut)
		l := testLog(t, dir)
		p := mustPartition(t, l, "torn", TopicConfig{}, 0)
		if p.HighWatermark() != 100 {
			// Followers do not repair; the torn batch is simply not visible.
			if p.HighWatermark() != 90 {
				t.Fatalf("cut %d: follower high watermark %d", cut, p.HighWatermark())
			}
		}
		appendN(t, p, 90, 10, 10, AcksAll) // the writer cuts the torn batch and continues at 90
		checkRecords(t, readAll(t, p, 0), 0, 100)
		l.Close()
	}
}

func TestFlippedBitIsCut(t *testing.T) {
	dir := t.TempDir()
	l := testLog(t, dir)
	p := mustPartition(t, l, "flip", TopicConfig{Partitions: 1}, 0)
	appendN(t, p, 0, 100, 10, AcksAll)
	l.Close()
	seg := filepath.Join(dir, "topics", "flip", "0", wal.SegmentName(1))
	b, _ := os.ReadFile(seg)
	b[len(b)-20] ^= 0x10 // inside the last batch's records
	os.WriteFile(seg, b, 0o644)

	// A reader in another process sees the damage as a clear error.
	l = testLog(t, dir)
	p = mustPartition(t, l, "flip", TopicConfig{}, 0)
	r, _ := p.NewReader(0)
	var err error
	buf := make([]Record, 0, 1000)
	for err == nil && r.Offset() < p.HighWatermark() {
		buf, err = r.Read(buf[:0])
	}
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Offset != 90 || !strings.Contains(err.Error(), seg) {
		t.Fatalf("reading a flipped bit: %v", err)
	}
	// The writer cuts it on open, with a warning, and continues.
	var logged bytes.Buffer
	l.opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	appendN(t, p, 90, 10, 10, AcksAll)
	checkRecords(t, readAll(t, p, 0), 0, 100)
	if !strings.Contains(logged.String(), "dropped_from_offset=90") || !strings.Contains(logged.String(), "partition=0") {
		t.Fatalf("no warning naming the partition and offsets: %q", logged.String())
	}
	l.Close()
}

// closedSegments writes 500 records to partition 0 of a new topic in 4 KiB
// segments in dir, closes the log and returns the partition's directory.
func closedSegments(t *testing.T, dir, topic string) string {
	t.Helper()
	l := testLog(t, dir)
	p := mustPartition(t, l, topic, TopicConfig{Partitions: 1, SegmentBytes: 4096}, 0)
	appendN(t, p, 0, 500, 10, AcksLeader)
	l.Close()
	return filepath.Join(dir, "topics", topic, "0")
}

func TestCorruptMiddleSegmentIsAnError(t *testing.T) {
	dir := t.TempDir()
	seg := filepath.Join(closedSegments(t, dir, "mid"), wal.SegmentName(1))
	b, _ := os.ReadFile(seg)
	b[100] ^= 0xff
	os.WriteFile(seg, b, 0o644)
	l := testLog(t, dir)
	defer l.Close()
	p := mustPartition(t, l, "mid", TopicConfig{}, 0)
	r, _ := p.NewReader(0)
	_, err := r.Read(make([]Record, 0, 1000))
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Path != seg {
		t.Fatalf("corrupt middle segment: %v", err)
	}
	// Records past the damaged segment are still served.
	checkRecords(t, readAll(t, p, 400), 400, 100)
}

// TestTornSegmentBeforeTailIsCut: after a power failure the segment before
// the tail may end torn (its fsync runs in the background when the log
// rolls). The writer cuts it at the tear and removes the tail after it, as
// Kafka's recovery of unflushed segments does, and offsets stay dense.
func TestTornSegmentBeforeTailIsCut(t *testing.T) {
	dir := t.TempDir()
	pdir := closedSegments(t, dir, "torn2")
	idxs, err := wal.Segments(pdir)
	if err != nil || len(idxs) < 3 {
		t.Fatalf("segments %v, %v", idxs, err)
	}
	prev := filepath.Join(pdir, wal.SegmentName(idxs[len(idxs)-2]))
	st, _ := os.Stat(prev)
	if err := os.Truncate(prev, st.Size()-30); err != nil {
		t.Fatal(err)
	}
	l := testLog(t, dir)
	defer l.Close()
	var logged bytes.Buffer
	l.opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	p := mustPartition(t, l, "torn2", TopicConfig{}, 0)
	base, err := p.Append([]Record{{TimestampMs: 1795341600000, Value: []byte("after")}}, AcksAll)
	if err != nil {
		t.Fatal(err)
	}
	if base <= 0 || base >= 500 {
		t.Fatalf("appends resumed at %d", base)
	}
	recs := readAll(t, p, 0)
	if int64(len(recs)) != base+1 || string(recs[base].Value) != "after" {
		t.Fatalf("read %d records after recovery, want %d ending with the new one", len(recs), base+1)
	}
	checkRecords(t, recs[:base], 0, int(base))
	if _, err := os.Stat(filepath.Join(pdir, wal.SegmentName(idxs[len(idxs)-1]))); err == nil {
		t.Fatalf("the tail after the torn segment is still there")
	}
	if !strings.Contains(logged.String(), "removed the segment after a torn one") {
		t.Fatalf("no warning: %q", logged.String())
	}
}

func TestAppendAllocs(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	p := mustPartition(t, l, "alloc", TopicConfig{Partitions: 1, SegmentBytes: 64 << 20}, 0)
	recs := make([]Record, 64)
	for i := range recs {
		recs[i] = Record{TimestampMs: 1795341600000, Key: []byte("payments"), Value: bytes.Repeat([]byte("x"), 120)}
	}
	appendN(t, p, 0, 1000, 64, AcksLeader) // warm up buffers
	for _, acks := range []Acks{AcksNone, AcksLeader} {
		if a := testing.AllocsPerRun(200, func() {
			if _, err := p.Append(recs, acks); err != nil {
				t.Fatal(err)
			}
		}); a != 0 {
			t.Errorf("Append of 64 records with acks=%v: %v allocs per call", acks, a)
		}
	}
	r, _ := p.NewReader(0)
	buf := make([]Record, 0, 512)
	if a := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = r.Read(buf[:0]); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Read: %v allocs per call", a)
	}
}

// A Reader's decoder is written per record, and readers of different
// goroutines are often allocated side by side: its fields sit between
// cache-line pads.
func TestReaderPadded(t *testing.T) {
	var r Reader
	line := unsafe.Sizeof(cpu.CacheLinePad{})
	first, end := unsafe.Offsetof(r.p), unsafe.Offsetof(r.midAt)+unsafe.Sizeof(r.midAt)
	if first < line || unsafe.Sizeof(r)-end < line {
		t.Fatalf("%d bytes before the first field, %d after the last; want %d each", first, unsafe.Sizeof(r)-end, line)
	}
}

// TestDeleteTopic: a deleted topic is gone for this Log and for another
// one on the same directory (another process: flock locks conflict
// between two opens in one process too). It is not deleted while another
// Log writes one of its partitions, which would go on acknowledging
// appends to files no longer in the log; a Log that had the topic open
// gets ErrUnknownTopic from its next Append and can create it anew.
func TestDeleteTopic(t *testing.T) {
	dir := t.TempDir()
	writer, other := testLog(t, dir), testLog(t, dir)
	defer other.Close()
	rec := []Record{{Value: []byte("v")}}
	p := mustPartition(t, writer, "t", TopicConfig{Partitions: 2}, 1)
	if _, err := p.Append(rec, AcksLeader); err != nil {
		t.Fatal(err)
	}
	// The deleting Log has the topic open too.
	op := mustPartition(t, other, "t", TopicConfig{}, 0)

	err := other.DeleteTopic("t")
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("deleting a topic another Log writes: %v", err)
	}
	if _, err := p.Append(rec, AcksLeader); err != nil || p.HighWatermark() != 2 {
		t.Fatalf("the writer after a refused delete: %v, high watermark %d", err, p.HighWatermark())
	}
	writer.Close()

	if err := other.DeleteTopic("t"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "topics", "t")); !os.IsNotExist(err) {
		t.Fatalf("topic directory after the delete: %v", err)
	}
	if names, _ := other.Topics(); len(names) != 0 {
		t.Fatalf("topics after the delete: %v", names)
	}
	if _, err := op.Append(rec, AcksLeader); err == nil {
		t.Fatal("appended to a deleted topic through a partition opened before the delete")
	}
	third := testLog(t, dir)
	defer third.Close()
	if _, err := third.Topic("t"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("a new Log opens the deleted topic: %v", err)
	}

	// A Log that opened a topic (a serve reading it) before another
	// deleted it.
	stale := testLog(t, dir)
	defer stale.Close()
	if _, err := stale.CreateTopic("u", TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	sp := mustPartition(t, stale, "u", TopicConfig{}, 0)
	if err := third.DeleteTopic("u"); err != nil { // stale has not written: nothing held
		t.Fatal(err)
	}
	if _, err := sp.Append(rec, AcksLeader); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("Append to a topic another Log deleted: %v", err)
	}
	if _, err := stale.Topic("u"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("Topic after its Append found it deleted: %v", err)
	}
	np := mustPartition(t, stale, "u", TopicConfig{Partitions: 1}, 0)
	if _, err := np.Append(rec, AcksLeader); err != nil || np.HighWatermark() != 1 {
		t.Fatalf("the topic created again: %v, high watermark %d", err, np.HighWatermark())
	}
}

// TestDeleteRecords: Kafka's DeleteRecords moves the log-start offset into
// the middle of a segment; the records below are out of range, the
// segments wholly below are deleted, the start survives a retention pass
// and a reopen; -1 is the high watermark, and an offset past it is
// refused.
func TestDeleteRecords(t *testing.T) {
	dir := t.TempDir()
	l := testLog(t, dir)
	p := mustPartition(t, l, "t", TopicConfig{Partitions: 1, SegmentBytes: 16 << 10}, 0)
	var recs []Record
	for i := range 3000 {
		recs = append(recs, Record{Value: fmt.Appendf(nil, "record %d", i)})
	}
	for i := 0; i < len(recs); i += 100 {
		if _, err := p.Append(recs[i:i+100], AcksLeader); err != nil {
			t.Fatal(err)
		}
	}
	segs := p.Segments()
	start, err := p.DeleteRecords(1555)
	if err != nil || start != 1555 || p.LogStartOffset() != 1555 {
		t.Fatalf("DeleteRecords(1555) = %d, %v; log start %d", start, err, p.LogStartOffset())
	}
	if p.Segments() >= segs {
		t.Fatalf("%d segments before, %d after: none deleted", segs, p.Segments())
	}
	var oor *OffsetOutOfRangeError
	if _, err := p.NewReader(1554); !errors.As(err, &oor) {
		t.Fatalf("reading below the new start: %v", err)
	}
	first := func(p *Partition) string {
		r, err := p.NewReader(p.LogStartOffset())
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got, err := r.Read(nil)
		if err != nil || len(got) == 0 {
			t.Fatalf("read at the start: %v", err)
		}
		return fmt.Sprintf("%d %s", got[0].Offset, got[0].Value)
	}
	if f := first(p); f != "1555 record 1555" {
		t.Fatalf("first record %s", f)
	}
	if start, err := p.DeleteRecords(100); err != nil || start != 1555 {
		t.Fatalf("DeleteRecords below the start = %d, %v", start, err)
	}
	if _, err := p.DeleteRecords(3001); !errors.As(err, &oor) {
		t.Fatalf("DeleteRecords past the high watermark: %v", err)
	}
	if err := p.Cleanup(); err != nil || p.LogStartOffset() != 1555 {
		t.Fatalf("after a retention pass: %v, log start %d", err, p.LogStartOffset())
	}
	l.Close()

	l = testLog(t, dir)
	defer l.Close()
	p = mustPartition(t, l, "t", TopicConfig{}, 0)
	if p.LogStartOffset() != 1555 || first(p) != "1555 record 1555" {
		t.Fatalf("reopened: log start %d, first record %s", p.LogStartOffset(), first(p))
	}
	if start, err := p.DeleteRecords(-1); err != nil || start != 3000 || p.LogStartOffset() != 3000 {
		t.Fatalf("DeleteRecords(-1) = %d, %v", start, err)
	}
	if _, err := p.Append(recs[:1], AcksLeader); err != nil || p.HighWatermark() != 3001 {
		t.Fatalf("append after deleting every record: %v, high watermark %d", err, p.HighWatermark())
	}
}

// TestAddPartitions: a topic grows, as with Kafka's CreatePartitions, and
// never shrinks; another process takes the new count up at its Reload,
// and its AlterConfig, made before it did, does not write the old count
// back; a consumer of the whole topic reads the new partitions from their
// start.
func TestAddPartitions(t *testing.T) {
	dir := t.TempDir()
	a, b := testLog(t, dir), testLog(t, dir)
	defer a.Close()
	defer b.Close()
	ta, err := a.CreateTopic("t", TopicConfig{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := b.Topic("t")
	cons, err := b.NewConsumer(ConsumerOptions{Topic: "t", Start: Start{Kind: StartLatest}})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for _, n := range []int32{2, 1} {
		var refused *ConfigError
		if err := ta.AddPartitions(n); !errors.As(err, &refused) || !strings.Contains(err.Error(), "can only be added") {
			t.Fatalf("AddPartitions(%d): %v", n, err)
		}
	}
	if err := ta.AddPartitions(4); err != nil || ta.Partitions() != 4 {
		t.Fatalf("AddPartitions(4): %v, %d", err, ta.Partitions())
	}
	p3, err := ta.Partition(3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p3.Append([]Record{{Value: []byte("in the new partition")}}, AcksLeader); err != nil {
		t.Fatal(err)
	}
	// b has not reloaded: its AlterConfig reloads first and keeps 4.
	if tb.Partitions() != 2 {
		t.Fatalf("b sees %d partitions before its reload", tb.Partitions())
	}
	if _, err := tb.AlterConfig(func(c *TopicConfig) error { c.Retention = time.Hour; return nil }); err != nil || tb.Partitions() != 4 {
		t.Fatalf("b's AlterConfig: %v, %d partitions", err, tb.Partitions())
	}
	c := testLog(t, dir)
	if tc, err := c.Topic("t"); err != nil || tc.Partitions() != 4 || tc.Config().Retention != time.Hour {
		t.Fatalf("reopened: %v %+v", err, tc)
	}
	c.Close()
	// The consumer started before the growth takes partition 3 up from its
	// start, though its own start policy is latest.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := cons.Poll(ctx, nil)
	if err != nil || len(recs) != 1 || recs[0].Partition != 3 || string(recs[0].Value) != "in the new partition" {
		t.Fatalf("consumer after the growth: %v %+v", err, recs)
	}
}

// TestReloadForgetsADeletedTopic: a process that finds, at a Reload, that
// another process deleted a topic it had open (and created one of the
// same name) opens the new one at its next Topic call, not the old one's
// files.
func TestReloadForgetsADeletedTopic(t *testing.T) {
	dir := t.TempDir()
	a, b := testLog(t, dir), testLog(t, dir)
	defer a.Close()
	defer b.Close()
	old, err := a.CreateTopic("t", TopicConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteTopic("t"); err != nil {
		t.Fatal(err)
	}
	if err := old.Reload(); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("Reload of the deleted topic: %v", err)
	}
	if _, err := a.Topic("t"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("Topic after the deletion: %v", err)
	}
	nt, err := b.CreateTopic("t", TopicConfig{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Topic("t"); err != nil || got.ID() != nt.ID() || got.Partitions() != 2 {
		t.Fatalf("Topic after it was created again: %v %+v", err, got)
	}
}

// Topics and groups of the longest names Kafka allows (249 bytes) can be
// deleted, and created again: the name a deletion moves them to is not
// theirs (name.TIME would not fit a file name's 255 bytes: "file name too
// long", with the topic already gone from the Log that deleted it). What a
// crash left in the trash, part way through a deletion, goes at the next
// Open.
func TestDeleteLongNames(t *testing.T) {
	dir := t.TempDir()
	l := testLog(t, dir)
	name := strings.Repeat("n", 249)
	p := mustPartition(t, l, name, TopicConfig{Partitions: 1}, 0)
	if _, err := p.Append([]Record{{Value: []byte("v")}}, AcksLeader); err != nil {
		t.Fatal(err)
	}
	g, err := l.Group(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Commit(name, 0, 1); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteTopic(name); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic(name, TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if err := g.Delete(); err != nil {
		t.Fatal(err)
	}
	if groups, _ := l.Groups(); len(groups) != 0 {
		t.Fatalf("groups after the delete: %v", groups)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "trash")); len(ents) != 0 {
		t.Fatalf("trash after the deletes: %d entries", len(ents))
	}
	l.Close()

	left := filepath.Join(dir, "trash", "topic.1.2.3", "0")
	if err := os.MkdirAll(left, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(left, "00000000000000000000.log"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	testLog(t, dir).Close()
	if ents, err := os.ReadDir(filepath.Join(dir, "trash")); err != nil || len(ents) != 0 {
		t.Fatalf("trash after Open: %d entries, %v", len(ents), err)
	}
}
