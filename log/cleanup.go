package log

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fastflow/fastflow/log/atomicfile"
	"github.com/fastflow/fastflow/log/internal/frame"
)

func (l *Log) cleaner() {
	defer close(l.done)
	t := time.NewTicker(l.opts.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.Cleanup()
		}
	}
}

// Cleanup runs retention and compaction once on every partition this
// process writes; the background cleaner calls it every
// Options.CleanupInterval. Errors are logged; the next pass retries.
func (l *Log) Cleanup() {
	l.mu.Lock()
	topics := make([]*Topic, 0, len(l.topics))
	for _, t := range l.topics {
		topics = append(topics, t)
	}
	l.mu.Unlock()
	for _, t := range topics {
		if err := t.Reload(); errors.Is(err, ErrUnknownTopic) {
			continue // deleted by another process, and forgotten
		} else if err != nil {
			l.opts.Logger.Error("reading a topic's configuration failed", "topic", t.name, "err", err)
		}
		for _, p := range t.open() {
			if err := p.Cleanup(); err != nil {
				l.opts.Logger.Error("log cleanup failed", "topic", t.name, "partition", p.id, "err", err)
			}
		}
	}
}

// Cleanup applies the topic's cleanup policy to p once: retention deletes
// old segments, compaction rewrites closed segments. Neither touches the
// active (last) segment, as in Kafka. Only the partition's writer cleans;
// elsewhere Cleanup does nothing.
func (p *Partition) Cleanup() error {
	p.cleanMu.Lock()
	defer p.cleanMu.Unlock()
	p.mu.Lock()
	writer := p.wal != nil
	p.mu.Unlock()
	if !writer {
		return nil
	}
	if p.topic.config().Cleanup == CleanupCompact {
		return p.compact()
	}
	return p.enforceRetention()
}

// enforceRetention deletes, oldest first, the closed segments whose newest
// record is older than the retention, or whose removal still leaves the
// partition at least retention_bytes large (Kafka's rules).
func (p *Partition) enforceRetention() error {
	cfg := p.topic.config()
	horizon := p.opts.Now().Add(-cfg.Retention).UnixMilli()
	p.meta.RLock()
	segs := p.segs
	var total int64
	for _, s := range segs {
		total += s.size
	}
	excess := total - cfg.RetentionBytes
	k := 0
	for ; k < len(segs)-1; k++ {
		s := segs[k]
		byTime := cfg.Retention > 0 && (s.entries == 0 || s.maxTs < horizon)
		bySize := cfg.RetentionBytes > 0 && excess >= s.size
		if !byTime && !bySize {
			break
		}
		excess -= s.size
	}
	var keep *segment
	if k > 0 {
		keep = segs[k]
	}
	p.meta.RUnlock()
	if keep == nil {
		return nil
	}
	newStart, err := p.moveStart(keep.baseOffset, keep.walIndex, "retention")
	if err != nil {
		return err
	}
	p.opts.Logger.Info("retention deleted segments", "topic", p.topic.name, "partition", p.id,
		"segments", k, "log_start_offset", newStart)
	return nil
}

// moveStart makes start the log-start offset, unless it is already past
// it, and deletes the segments before the one whose wal index is walIdx (0:
// none). It returns the log-start offset. p.cleanMu is held, and p is the
// writer.
func (p *Partition) moveStart(start int64, walIdx uint64, why string) (int64, error) {
	// The new log start is persisted first: a crash between this and the
	// truncation hides the old segments, and the next pass deletes them.
	st, err := p.readState()
	if err != nil {
		return 0, err
	}
	start = max(start, st.LogStartOffset) // DeleteRecords may have gone further
	if start != st.LogStartOffset {
		st.LogStartOffset = start
		if err := p.writeState(st); err != nil {
			return 0, err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wal == nil {
		return 0, p.failed
	}
	if walIdx > 0 {
		// The kept segment starts a wal file: wal deletes the files before
		// it, oldest first, and copies nothing.
		if err := p.wal.TruncateFront(walIdx); err != nil {
			return 0, p.failLocked(fmt.Errorf("%s of %s/%d: %w", why, p.topic.name, p.id, err))
		}
		p.meta.Lock()
		for i, s := range p.segs {
			if s.walIndex == walIdx {
				p.segs = p.segs[i:]
				break
			}
		}
		p.meta.Unlock()
	}
	p.start.Store(start)
	p.notify()
	return start, nil
}

// DeleteRecords moves the partition's log-start offset up to before, as
// Kafka's DeleteRecords does (kafka-delete-records, an admin client's
// deleteRecords); -1 means the high watermark. Records below it are no
// longer served (reading there is an *OffsetOutOfRangeError, as after
// retention) and the segments wholly below it are deleted. It returns the
// new log-start offset (Kafka's low watermark); an offset past the high
// watermark is an *OffsetOutOfRangeError. This process becomes the
// partition's writer, so another process writing it makes it fail with
// ErrLocked.
func (p *Partition) DeleteRecords(before int64) (int64, error) {
	p.cleanMu.Lock()
	defer p.cleanMu.Unlock()
	p.mu.Lock()
	err := p.writableLocked()
	p.mu.Unlock()
	if err != nil {
		return 0, err
	}
	hw, start := p.hw.Load(), p.start.Load()
	if before == -1 {
		before = hw
	}
	if before < 0 || before > hw {
		return 0, &OffsetOutOfRangeError{Topic: p.topic.name, Partition: p.id, Offset: before, Start: start, End: hw}
	}
	if before <= start {
		return start, nil
	}
	// The segments that end at or before it go; the tail stays.
	var walIdx uint64
	p.meta.RLock()
	for i, s := range p.segs {
		if i == len(p.segs)-1 || s.nextOffset > before {
			if i > 0 {
				walIdx = s.walIndex
			}
			break
		}
	}
	p.meta.RUnlock()
	return p.moveStart(before, walIdx, "delete records")
}

// compact keeps, in the closed segments, only the latest record of each
// key (and records without a key), like Kafka's log cleaner. Survivors keep
// their offsets and each segment its offset range. A tombstone (null value) is kept
// until its timestamp is older than delete_retention, so that consumers
// see the deletion, then removed.
//
// A pass reads the whole partition, so, as Kafka's cleaner does, it runs
// only once the closed segments written since the last pass (the dirty
// part) make up at least minCleanableDirtyRatio of the closed bytes: the
// bytes read for compaction stay in proportion to the bytes written, however
// often Cleanup is called and however large the compacted part has grown.
func (p *Partition) compact() error {
	horizon := p.opts.Now().Add(-p.topic.config().DeleteRetention).UnixMilli()
	st, err := p.readState()
	if err != nil {
		return err
	}
	p.meta.RLock()
	var closed []segment
	for _, s := range p.segs[:len(p.segs)-1] {
		closed = append(closed, *s)
	}
	p.meta.RUnlock()
	var total, dirty int64
	for _, s := range closed {
		total += s.size
		if s.nextOffset > st.CleanedOffset {
			dirty += s.size
		}
	}
	if dirty == 0 || float64(dirty) < minCleanableDirtyRatio*float64(total) {
		return nil
	}
	latest, err := p.latestOffsets()
	if err != nil {
		return err
	}
	for i := range closed {
		if err := p.rewriteSegment(&closed[i], latest, horizon); err != nil {
			return err
		}
	}
	st.CleanedOffset = closed[len(closed)-1].nextOffset
	return p.writeState(st)
}

// minCleanableDirtyRatio is Kafka's min.cleanable.dirty.ratio default.
const minCleanableDirtyRatio = 0.5

// latestOffsets maps each key to the offset of its latest record.
func (p *Partition) latestOffsets() (map[string]int64, error) {
	r, err := p.NewReader(p.LogStartOffset())
	if err != nil {
		return nil, err
	}
	defer r.Close()
	end := p.HighWatermark()
	latest := map[string]int64{}
	buf := make([]Record, 0, 1024)
	for r.Offset() < end {
		buf, err = r.Read(buf[:0])
		if err != nil {
			return nil, err
		}
		if len(buf) == 0 {
			break
		}
		for i := range buf {
			if buf[i].Key != nil && buf[i].Offset < end {
				latest[string(buf[i].Key)] = buf[i].Offset
			}
		}
	}
	return latest, nil
}

// rewriteSegment writes s without its superseded records to a temporary
// file and renames it over s, if anything is to be dropped.
func (p *Partition) rewriteSegment(s *segment, latest map[string]int64, horizon int64) error {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return err
	}
	keep := func(d *frame.Decoder) bool {
		if d.Key == nil {
			return true
		}
		if latest[string(d.Key)] != d.Offset {
			return false
		}
		return d.Value != nil || d.TimestampMs >= horizon
	}
	// First pass: is there anything to drop?
	drop := 0
	var d frame.Decoder
	err = forEachEntry(s.path, data, func(pos int64, b []byte) error {
		d.Init(b)
		for d.Next() {
			if !keep(&d) {
				drop++
			}
		}
		return d.Err()
	})
	if err != nil || drop == 0 {
		return err
	}
	tmp := s.path + compactSuffix
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	w := bufio.NewWriterSize(f, 1<<20)
	var b frame.Builder
	var lenBuf [binary.MaxVarintLen64]byte
	flush := func() error {
		out := b.Finish()
		w.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(out)))])
		_, err := w.Write(out)
		return err
	}
	// Survivors of consecutive batches are merged into batches of about
	// targetFrameBytes whose offset spans stay contiguous. wal only needs
	// a closed segment to keep at least one entry (retention, which
	// truncates wal, never runs on a compacted topic).
	spanBase := int64(-1)
	err = forEachEntry(s.path, data, func(pos int64, in []byte) error {
		d.Init(in)
		if spanBase >= 0 && b.Len() >= targetFrameBytes {
			if err := flush(); err != nil {
				return err
			}
			spanBase = -1
		}
		if spanBase < 0 {
			spanBase = d.BaseOffset
			b.Reset(spanBase, d.Attributes)
		}
		for d.Next() {
			if keep(&d) {
				b.AddRaw(int32(d.Offset-spanBase), d.TimestampMs, d.Raw())
			}
		}
		b.KeepSpan(int32(d.LastOffset() - spanBase))
		return d.Err()
	})
	if err == nil && spanBase >= 0 {
		err = flush()
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("compact %s: %w", s.path, err)
	}
	fresh := newSegment(p.dir, s.walIndex, s.baseOffset)
	var scratch []byte
	if err := scanSegmentFile(fresh, tmp, &scratch); err != nil {
		return fmt.Errorf("BUG: compacted segment does not scan: %w", err)
	}
	if fresh.baseOffset != s.baseOffset || fresh.nextOffset != s.nextOffset {
		return fmt.Errorf("BUG: compacting %s changed its offset range", s.path)
	}
	fresh.path = s.path
	p.mu.Lock()
	defer p.mu.Unlock()
	// Readers look a position up and open the file under meta: renaming
	// under it too keeps every position with the file it belongs to.
	p.meta.Lock()
	err = os.Rename(tmp, s.path)
	if err == nil {
		for i, cur := range p.segs {
			if cur.walIndex == s.walIndex {
				p.segs[i] = fresh
			}
		}
	}
	p.meta.Unlock()
	if err != nil {
		return err
	}
	if err := atomicfile.SyncDir(p.dir); err != nil {
		return err
	}
	p.opts.Logger.Info("compacted segment", "topic", p.topic.name, "partition", p.id,
		"file", s.path, "records_dropped", drop, "bytes_before", s.size, "bytes_after", fresh.size)
	return nil
}

// compactSuffix names the copy of a segment that compaction writes before
// renaming it over the segment.
const compactSuffix = ".compact"

// removeUnfinishedWrites deletes, in a partition's directory, what a
// writer that died left half written: the copies a compaction was writing
// (the segment each was to replace is still whole, as the rename is the
// commit, and the next pass compacts it again; Kafka's log recovery
// deletes its cleaner's ".cleaned" files the same way), and the
// temporary file of a state update (the state file holds the old state).
// A compaction's copy may be as large as segment_bytes, so each kill in a
// compaction would otherwise leak one. Only the writer, which holds the
// partition's lock, writes either.
func removeUnfinishedWrites(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, compactSuffix) || n == stateFile+atomicfile.TempSuffix {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// forEachEntry calls fn with each wal entry of a segment file's bytes,
// checking each batch's CRC.
func forEachEntry(path string, data []byte, fn func(pos int64, b []byte) error) error {
	pos := 0
	for pos < len(data) {
		size, k := uvarint(data[pos:])
		if k <= 0 || uint64(len(data)-pos-k) < size {
			return &CorruptError{Path: path, Pos: int64(pos), Offset: -1, Err: errTorn}
		}
		b := data[pos+k : pos+k+int(size)]
		if err := frame.Verify(b); err != nil {
			return &CorruptError{Path: path, Pos: int64(pos), Offset: -1, Err: err}
		}
		if err := fn(int64(pos), b); err != nil {
			return err
		}
		pos += k + int(size)
	}
	return nil
}

// scanSegmentFile scans the file at path into s (whose own path is then
// set back to its final name by the caller).
func scanSegmentFile(s *segment, path string, buf *[]byte) error {
	final := s.path
	s.path = path
	err := scanSegment(s, 0, true, -1, buf)
	s.path = final
	return err
}
