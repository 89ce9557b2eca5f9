package log

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// clockLog opens a Log whose clock the test sets.
func clockLog(t *testing.T, dir string, now *atomic.Int64) *Log {
	t.Helper()
	l, err := Open(dir, Options{CleanupInterval: -1, Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return time.UnixMilli(now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestRetentionByTime(t *testing.T) {
	dir := t.TempDir()
	var now atomic.Int64
	now.Store(1_000_000_000)
	l := clockLog(t, dir, &now)
	p := mustPartition(t, l, "rt", TopicConfig{Partitions: 1, SegmentBytes: 4096, Retention: time.Hour}, 0)
	// Old records: an hour and a half ago; then fresh ones.
	old := now.Load() - 90*time.Minute.Milliseconds()
	var recs []Record
	for i := 0; i < 300; i++ {
		recs = append(recs, Record{TimestampMs: old + int64(i), Value: bytes.Repeat([]byte("o"), 100)})
	}
	p.Append(recs, AcksLeader)
	for i := range recs {
		recs[i] = Record{TimestampMs: now.Load(), Value: bytes.Repeat([]byte("n"), 100)}
	}
	p.Append(recs, AcksLeader)
	segsBefore := p.Segments()
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
	start := p.LogStartOffset()
	if start == 0 || start > 300 || p.Segments() >= segsBefore {
		t.Fatalf("retention: log start %d, segments %d -> %d", start, segsBefore, p.Segments())
	}
	// Everything below the start is gone; at and above it is intact.
	if _, err := p.NewReader(start - 1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below log start: %v", err)
	}
	got := readAll(t, p, start)
	if int64(len(got)) != 600-start || got[0].Offset != start {
		t.Fatalf("after retention read %d records from %d", len(got), got[0].Offset)
	}
	for _, r := range got {
		if r.TimestampMs < old || r.Offset >= 300 && r.Value[0] != 'n' {
			t.Fatalf("bad record after retention: %+v", r)
		}
	}
	// Appends continue; the start survives a restart.
	appendN(t, p, 600, 10, 10, AcksLeader)
	l.Close()
	l = clockLog(t, dir, &now)
	defer l.Close()
	p = mustPartition(t, l, "rt", TopicConfig{}, 0)
	if p.LogStartOffset() != start || p.HighWatermark() != 610 {
		t.Fatalf("after restart: start %d hw %d", p.LogStartOffset(), p.HighWatermark())
	}
	// Once everything is old, all closed segments go; the active one stays.
	now.Add(3 * time.Hour.Milliseconds())
	appendN(t, p, 610, 1, 1, AcksLeader)
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if p.Segments() != 1 {
		t.Fatalf("%d segments left", p.Segments())
	}
}

func TestRetentionByBytes(t *testing.T) {
	// The clock is the records' time (rec), not the wall clock: past the
	// default retention of 7 days from their timestamps, the time rule
	// would delete every closed segment and the size rule go untested.
	var now atomic.Int64
	now.Store(rec(1000).TimestampMs)
	l := clockLog(t, t.TempDir(), &now)
	defer l.Close()
	p := mustPartition(t, l, "rb", TopicConfig{Partitions: 1, SegmentBytes: 4096, RetentionBytes: 20000}, 0)
	for i := 0; i < 20; i++ {
		appendN(t, p, i*50, 50, 50, AcksLeader)
	}
	total := p.Size()
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if p.Size() < 20000 || p.Size() > 20000+4096+4096 || p.Size() >= total {
		t.Fatalf("size %d -> %d with retention_bytes 20000", total, p.Size())
	}
	checkRecords(t, readAll(t, p, p.LogStartOffset()), int(p.LogStartOffset()), 1000-int(p.LogStartOffset()))
}

func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	var now atomic.Int64
	now.Store(10 * time.Hour.Milliseconds())
	l := clockLog(t, dir, &now)
	p := mustPartition(t, l, "kv", TopicConfig{Partitions: 1, SegmentBytes: 4096, Cleanup: CleanupCompact, DeleteRetention: time.Hour}, 0)
	// 10 keys updated 100 times; key-3 deleted (tombstone) at the end;
	// some records without a key, which compaction keeps.
	var want = map[string]int64{}
	for i := 0; i < 1000; i++ {
		k := fmt.Sprintf("key-%d", i%10)
		r := Record{TimestampMs: now.Load(), Key: []byte(k), Value: fmt.Appendf(nil, "v%d", i)}
		if i%100 == 0 {
			r.Key = nil
		}
		off, err := p.Append([]Record{r}, AcksLeader)
		if err != nil {
			t.Fatal(err)
		}
		if r.Key != nil {
			want[k] = off
		}
	}
	tomb, _ := p.Append([]Record{{TimestampMs: now.Load(), Key: []byte("key-3")}}, AcksLeader)
	want["key-3"] = tomb
	sizeBefore := p.Size()
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if p.Size() >= sizeBefore/2 {
		t.Fatalf("compaction kept %d of %d bytes", p.Size(), sizeBefore)
	}
	check := func(tombstone bool) {
		t.Helper()
		latest := map[string]int64{}
		nulls := 0
		prev := int64(-1)
		for _, r := range readAll(t, p, 0) {
			if r.Offset <= prev {
				t.Fatalf("offsets not increasing: %d after %d", r.Offset, prev)
			}
			prev = r.Offset
			if r.Key == nil {
				nulls++
				continue
			}
			// In closed segments only the latest survives; the active one is untouched.
			if _, dup := latest[string(r.Key)]; dup && r.Offset < want[string(r.Key)] && p.segmentOf(r.Offset) != p.Segments()-1 {
				t.Fatalf("superseded record %s@%d survived", r.Key, r.Offset)
			}
			latest[string(r.Key)] = r.Offset
		}
		if nulls != 10 {
			t.Fatalf("%d null-key records survived, want 10", nulls)
		}
		for k, o := range want {
			got, ok := latest[k]
			if k == "key-3" && !tombstone {
				if ok && p.segmentOf(got) != p.Segments()-1 {
					t.Fatalf("tombstoned key-3 still at %d after delete_retention", got)
				}
				continue
			}
			if got != o {
				t.Fatalf("latest %s at %d, want %d", k, got, o)
			}
		}
	}
	check(true)
	// After delete_retention the tombstone itself goes (once it is in a closed segment).
	fill(t, p, 200)
	now.Add(2 * time.Hour.Milliseconds())
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
	check(false)
	l.Close()
	// Reopen: the compacted segments scan and read the same.
	l = clockLog(t, dir, &now)
	defer l.Close()
	p = mustPartition(t, l, "kv", TopicConfig{}, 0)
	fill(t, p, 10)
	check(false)
}

// segmentOf returns the index in p.segs of the segment holding offset o.
func (p *Partition) segmentOf(o int64) int {
	p.meta.RLock()
	defer p.meta.RUnlock()
	for i, s := range p.segs {
		if o < s.nextOffset {
			return i
		}
	}
	return len(p.segs) - 1
}

// fill appends n records with keys of their own ("fill-N"), once each.
func fill(t *testing.T, p *Partition, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := p.Append([]Record{{Key: fmt.Appendf(nil, "fill-%d-%d", p.HighWatermark(), i), Value: []byte("f")}}, AcksLeader); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCompactionWaitsForDirtyBytes: a compaction pass reads the whole
// partition, so it runs only once the closed segments written since the
// last pass are at least half of the closed bytes (Kafka's
// min.cleanable.dirty.ratio), and how far the last pass got survives a
// restart; otherwise every call of Cleanup (each produce, every minute of
// serve) would read everything again.
func TestCompactionWaitsForDirtyBytes(t *testing.T) {
	dir := t.TempDir()
	var now atomic.Int64
	now.Store(10 * time.Hour.Milliseconds())
	l := clockLog(t, dir, &now)
	p := mustPartition(t, l, "kv", TopicConfig{Partitions: 1, SegmentBytes: 4096, Cleanup: CleanupCompact}, 0)
	put := func(key string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			k := key
			if key == "" {
				k = fmt.Sprintf("cold-%d-%d", p.HighWatermark(), i)
			}
			if _, err := p.Append([]Record{{TimestampMs: now.Load(), Key: []byte(k), Value: []byte("value")}}, AcksLeader); err != nil {
				t.Fatal(err)
			}
		}
	}
	records := func() int { return len(readAll(t, p, 0)) }
	cleanup := func() {
		t.Helper()
		if err := p.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	// A large clean part: distinct keys, then one pass over them.
	put("", 3000)
	put("hot", 50)
	before := records()
	cleanup()
	if records() >= before {
		t.Fatalf("first pass kept all %d records", before)
	}
	// One more closed segment of updates: dirty, but far below half of
	// the closed bytes. Its superseded records stay, across a restart too.
	put("hot", 200)
	before = records()
	cleanup()
	if records() != before {
		t.Fatalf("a small dirty part was compacted: %d -> %d records", before, records())
	}
	l.Close()
	l = clockLog(t, dir, &now)
	defer l.Close()
	p = mustPartition(t, l, "kv", TopicConfig{}, 0)
	cleanup()
	if records() != before {
		t.Fatalf("after a restart a small dirty part was compacted: %d -> %d records", before, records())
	}
	// As many dirty bytes as clean ones: the next pass compacts.
	put("hot", 4000)
	before = records()
	cleanup()
	if after := records(); after > before-3000 {
		t.Fatalf("a dirty part as large as the clean one was not compacted: %d -> %d records", before, after)
	}
}

// TestAlterConfig: a topic's configuration changes as Kafka's
// AlterConfigs changes it: validated, kept across a restart, applied at
// once in the process that changed it, and taken up by another process
// using the data directory at its next cleanup pass — here the writer,
// whose retention then follows the new retention_bytes.
func TestAlterConfig(t *testing.T) {
	dir := t.TempDir()
	var now atomic.Int64
	now.Store(rec(0).TimestampMs)
	admin := clockLog(t, dir, &now)
	tp, err := admin.CreateTopic("a", TopicConfig{Partitions: 1, SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	// Refused: the partitions, an invalid value; the config stays.
	if _, err := tp.AlterConfig(func(c *TopicConfig) error { c.Partitions = 2; return nil }); err == nil || !strings.Contains(err.Error(), "only by adding partitions") {
		t.Fatalf("changing the partitions: %v", err)
	}
	if _, err := tp.AlterConfig(func(c *TopicConfig) error { c.SegmentBytes = 100; return nil }); err == nil || !strings.Contains(err.Error(), "segment_bytes") {
		t.Fatalf("segment_bytes 100: %v", err)
	}
	if tp.Config().SegmentBytes != 4096 {
		t.Fatalf("a refused change applied: %+v", tp.Config())
	}
	// Applied at once here: max_record_bytes.
	if _, err := tp.AlterConfig(func(c *TopicConfig) error { c.MaxRecordBytes = 50; return nil }); err != nil {
		t.Fatal(err)
	}
	p, _ := tp.Partition(0)
	if _, err := p.Append([]Record{{Value: bytes.Repeat([]byte("x"), 60)}}, AcksLeader); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("a 60-byte record after max_record_bytes 50: %v", err)
	}
	if _, err := tp.AlterConfig(func(c *TopicConfig) error { c.MaxRecordBytes = 0; return nil }); err != nil || tp.Config().MaxRecordBytes != DefaultMaxRecordBytes {
		t.Fatalf("back to the default: %v, %+v", err, tp.Config())
	}
	// Another process writes the partition; the admin lowers its retention.
	admin.Close()
	writer := clockLog(t, dir, &now)
	defer writer.Close()
	wp := mustPartition(t, writer, "a", TopicConfig{}, 0)
	for i := 0; i < 20; i++ {
		appendN(t, wp, i*50, 50, 50, AcksLeader)
	}
	admin = clockLog(t, dir, &now)
	atp, _ := admin.Topic("a")
	if _, err := atp.AlterConfig(func(c *TopicConfig) error { c.RetentionBytes = 20000; return nil }); err != nil {
		t.Fatal(err)
	}
	total := wp.Size()
	writer.Cleanup()
	if got := wp.topic.Config().RetentionBytes; got != 20000 {
		t.Fatalf("the writer's retention_bytes after its cleanup pass: %d", got)
	}
	if wp.LogStartOffset() == 0 || wp.Size() >= total || wp.Size() < 20000 {
		t.Fatalf("retention_bytes 20000 set by another process: size %d -> %d, start %d", total, wp.Size(), wp.LogStartOffset())
	}
	// Kept across a restart.
	admin.Close()
	admin = clockLog(t, dir, &now)
	defer admin.Close()
	if tp, _ = admin.Topic("a"); tp.Config().RetentionBytes != 20000 || tp.Config().SegmentBytes != 4096 {
		t.Fatalf("after a restart: %+v", tp.Config())
	}
}

// TestCloseCleans: a process that writes for less than a CleanupInterval
// still applies retention to what it wrote, as it closes the log.
func TestCloseCleans(t *testing.T) {
	dir := t.TempDir()
	open := func() *Log {
		l, err := Open(dir, Options{CleanupInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open()
	p := mustPartition(t, l, "short", TopicConfig{Partitions: 1, SegmentBytes: 4096, RetentionBytes: 10000}, 0)
	for i := 0; i < 20; i++ {
		appendN(t, p, i*50, 50, 50, AcksLeader)
	}
	total := p.Size()
	l.Close()
	l = open()
	defer l.Close()
	p = mustPartition(t, l, "short", TopicConfig{}, 0)
	if p.LogStartOffset() == 0 || p.Size() >= total {
		t.Fatalf("retention_bytes 10000 after a close: size %d -> %d, start %d", total, p.Size(), p.LogStartOffset())
	}
}
