package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastflow/fastflow/log/atomicfile"
	"github.com/fastflow/fastflow/log/internal/frame"
	"github.com/fastflow/fastflow/log/internal/wal"
)

// targetFrameBytes closes a batch once it holds this many bytes: large
// enough that per-entry costs vanish, small enough that a reader's buffer
// holds many.
const targetFrameBytes = 64 << 10

// maxSyncWait bounds how many times a group commit yields to appends that
// are still writing before it fsyncs (each yield is about a microsecond).
const maxSyncWait = 200

// maxQueuedBytes is how much AcksNone data waits in memory before the
// appending call writes it itself.
const maxQueuedBytes = 1 << 20

// Partition is one partition of a topic: an ordered, durable sequence of
// records with dense offsets from 0.
//
// A Partition is safe for concurrent use. Appends are serialized per
// partition (a batch at a time, never a record at a time); readers run
// concurrently with them and with each other.
//
// In a process, a partition starts as a follower: it serves reads from
// the files as they are, noticing appends by other processes. Its first
// Append makes it the writer: it takes the partition's lock file (one
// writer process per partition), repairs a torn tail and opens the
// segments with tidwall/wal.
type Partition struct {
	topic *Topic
	id    int32
	dir   string
	opts  *Options

	// mu serializes writers and guards the fields below it. Lock order:
	// syncMu, then mu, then meta.
	mu       sync.Mutex
	wal      *wal.Log // nil until the first Append (follower), or after a write error
	lockFile *os.File
	failed   error // the write error that closed wal; the next Append repairs
	next     int64 // next offset to assign, queued AcksNone records included
	lastWal  uint64
	segBytes int64 // wal's segment size
	walBatch wal.Batch
	frames   []queuedFrame // headers of the frames in walBatch
	queued   int           // bytes in walBatch
	// unwritten counts the queued records of AcksNone appends, which
	// returned before their write: if it fails, they are lost (lostErr).
	unwritten int64
	lostErr   error
	builder   frame.Builder
	linger    *time.Timer
	armed     bool

	// meta guards segs and the segments' fields.
	meta sync.RWMutex
	segs []*segment

	hw      atomic.Int64 // high watermark: offsets below it are readable
	start   atomic.Int64 // log-start offset
	waiters atomic.Int32 // goroutines in waitFor
	wake    atomic.Pointer[chan struct{}]
	closed  atomic.Bool

	// Consumers watching several partitions register a channel each.
	listening atomic.Int32
	listenMu  sync.Mutex
	listeners []chan struct{}

	// Group commit. One goroutine at a time, the leader, fsyncs for every
	// append written before its fsync began; the others wait on syncCond
	// and leave as soon as synced covers them, without queueing for the
	// leader's lock. syncState guards synced and syncing.
	syncState sync.Mutex
	syncCond  sync.Cond
	synced    int64 // offsets below are durable
	syncing   bool  // a leader is fsyncing
	// syncMu is held by the leader while it fsyncs, and by whoever changes
	// the sync descriptor.
	syncMu   sync.Mutex
	syncFile *os.File
	syncPath string
	dirDirty atomic.Bool
	stats    partitionCounters
	// cleanMu serializes Cleanup: the background cleaner and a caller.
	cleanMu sync.Mutex

	// writing counts AcksAll appends between entering Append and finishing
	// their write: the goroutine about to fsync waits (briefly) for them,
	// so that one fsync covers them too.
	writing atomic.Int32
}

// PartitionStats are a partition's counters since it was opened in this
// process.
type PartitionStats struct {
	Appends int64 // Append calls that succeeded (with AcksNone: queued)
	Records int64 // records appended (with AcksNone: queued)
	Bytes   int64 // record bytes (keys, values, headers) appended
	Fsyncs  int64 // group-commit fsyncs
	// Lost counts records appended with AcksNone whose write then failed
	// (a full disk): Append had returned, so no caller was told.
	Lost int64
}

type partitionCounters struct {
	appends, records, bytes, fsyncs, lost atomic.Int64
}

// Stats returns the partition's counters.
func (p *Partition) Stats() PartitionStats {
	return PartitionStats{Appends: p.stats.appends.Load(), Records: p.stats.records.Load(),
		Bytes: p.stats.bytes.Load(), Fsyncs: p.stats.fsyncs.Load(), Lost: p.stats.lost.Load()}
}

// LostError returns the write error that last lost records appended with
// AcksNone (PartitionStats.Lost), or nil if none was lost.
func (p *Partition) LostError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lostErr
}

type queuedFrame struct {
	size int // wal entry size: length prefix and frame
	hdr  frame.Header
}

func openPartition(t *Topic, id int32) (*Partition, error) {
	p := &Partition{
		topic: t,
		id:    id,
		dir:   filepath.Join(t.dir, fmt.Sprint(id)),
		opts:  &t.log.opts,
	}
	ch := make(chan struct{})
	p.wake.Store(&ch)
	p.syncCond.L = &p.syncState
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	if err := p.loadFollower(); err != nil {
		return nil, fmt.Errorf("open partition %d of %q: %w", id, t.name, err)
	}
	return p, nil
}

// Topic is the name of the partition's topic.
func (p *Partition) Topic() string { return p.topic.name }

// ID is the partition number.
func (p *Partition) ID() int32 { return p.id }

// HighWatermark is the offset after the last readable record: the next
// offset a consumer at the end waits for. Kafka's high watermark.
func (p *Partition) HighWatermark() int64 { return p.hw.Load() }

// LogStartOffset is the first offset that retention has kept.
func (p *Partition) LogStartOffset() int64 { return p.start.Load() }

// Size is the partition's size on disk in bytes.
func (p *Partition) Size() int64 {
	p.meta.RLock()
	defer p.meta.RUnlock()
	var n int64
	for _, s := range p.segs {
		n += s.size
	}
	return n
}

// Segments is the number of segment files.
func (p *Partition) Segments() int {
	p.meta.RLock()
	defer p.meta.RUnlock()
	return len(p.segs)
}

// writableLocked makes p the partition's writer if it is not yet, or again
// after a write error. p.mu is held.
func (p *Partition) writableLocked() error {
	if p.wal != nil {
		return nil
	}
	if p.closed.Load() {
		return ErrClosed
	}
	if p.lockFile == nil {
		f, err := lockFile(filepath.Join(p.dir, "lock"), p.opts.LockTimeout)
		if errors.Is(err, os.ErrNotExist) {
			// Another process deleted the topic (DeleteTopic waits for
			// no writer): say so, and forget it, so that a topic created
			// again under its name is opened afresh.
			p.topic.log.forget(p.topic)
			return fmt.Errorf("%w: %q was deleted", ErrUnknownTopic, p.topic.name)
		}
		if err != nil {
			return fmt.Errorf("%s/%d: %w", p.topic.name, p.id, err)
		}
		p.lockFile = f
	}
	if err := wal.Recover(p.dir); err != nil {
		return err
	}
	if err := removeUnfinishedWrites(p.dir); err != nil {
		return err
	}
	cutAt := int64(-1)
	if p.failed != nil {
		cutAt = p.hw.Load()
	}
	segs, start, err := p.loadSegments(true, cutAt)
	if err != nil {
		return err
	}
	// wal rolls at the segment size it was opened with, and flushLocked
	// must roll where it does: a change of segment_bytes applies from the
	// next open.
	segBytes := p.topic.config().SegmentBytes
	w, err := wal.Open(p.dir, &wal.Options{
		NoSync:      true, // we fsync: once per group commit, not per write
		SegmentSize: int(segBytes),
		DirPerms:    0o755,
		FilePerms:   0o644,
	})
	if err != nil {
		return fmt.Errorf("open segments of %s/%d: %w", p.topic.name, p.id, err)
	}
	last, _ := w.LastIndex()
	if len(segs) == 0 {
		// A new partition: wal has just created its first segment.
		segs = []*segment{newSegment(p.dir, 1, start)}
		if err := atomicfile.SyncDir(p.dir); err != nil {
			w.Close()
			return err
		}
	}
	tail := segs[len(segs)-1]
	if want := tail.walIndex + uint64(tail.entries) - 1; last != want {
		w.Close()
		return fmt.Errorf("BUG: wal of %s/%d ends at entry %d, the log scanned %d", p.topic.name, p.id, last, want)
	}
	p.wal, p.lastWal, p.failed, p.segBytes = w, last, nil, segBytes
	p.meta.Lock()
	p.segs = segs
	p.meta.Unlock()
	p.start.Store(start)
	p.next = endOffset(segs, start)
	p.hw.Store(p.next)
	if p.linger == nil {
		p.linger = time.AfterFunc(time.Hour, p.lingerFlush)
		p.linger.Stop()
	}
	p.notify()
	return nil
}

// Append appends recs to the partition as consecutive offsets, sets their
// Partition, Offset and TimestampMs, and returns the first offset. It
// returns when acks says (see Acks). Either all records are appended or
// none: a record above max_record_bytes fails the call before anything is
// written, and a write error (a full disk) leaves the partition as it was
// before the call, ready for the next Append once space is available.
//
// Append does not keep recs or their bytes.
func (p *Partition) Append(recs []Record, acks Acks) (int64, error) {
	if len(recs) == 0 {
		return p.hw.Load(), nil
	}
	cfg := p.topic.config()
	var size int64
	for i := range recs {
		n := recs[i].Bytes()
		size += int64(n)
		if n > cfg.MaxRecordBytes {
			return -1, fmt.Errorf("%w: record %d of the batch is %d bytes, max_record_bytes of %q is %d",
				ErrRecordTooLarge, i, n, p.topic.name, cfg.MaxRecordBytes)
		}
	}
	if acks == AcksAll {
		p.writing.Add(1)
	}
	p.mu.Lock()
	if err := p.writableLocked(); err != nil {
		p.mu.Unlock()
		if acks == AcksAll {
			p.writing.Add(-1)
		}
		return -1, err
	}
	base := p.next
	p.encodeLocked(recs)
	if acks == AcksNone && p.queued < maxQueuedBytes {
		p.unwritten += int64(len(recs))
		p.countAppend(len(recs), size)
		if !p.armed {
			p.armed = true
			p.linger.Reset(p.opts.Linger)
		}
		p.mu.Unlock()
		return base, nil
	}
	err := p.flushLocked()
	end := p.next
	p.mu.Unlock()
	if acks == AcksAll {
		p.writing.Add(-1)
	}
	if err != nil {
		return -1, err
	}
	p.countAppend(len(recs), size)
	if acks == AcksAll {
		if err := p.syncTo(end); err != nil {
			return -1, err
		}
	}
	return base, nil
}

// countAppend counts an append of n records and size bytes that succeeded.
func (p *Partition) countAppend(n int, size int64) {
	p.stats.appends.Add(1)
	p.stats.records.Add(int64(n))
	p.stats.bytes.Add(size)
}

// encodeLocked frames recs into batches queued in walBatch.
func (p *Partition) encodeLocked(recs []Record) {
	var attrs uint8
	appendTime := p.topic.config().TimestampType == TimestampAppend
	if appendTime {
		attrs = frame.AttrLogAppendTime
	}
	var now int64
	b := &p.builder
	base, start := p.next, 0 // offset of recs[0]; first record of the open frame
	// Frames are built in place in the wal batch.
	b.ResetAppend(p.walBatch.Begin(), base, attrs)
	for i := range recs {
		r := &recs[i]
		if r.TimestampMs == 0 || appendTime {
			if now == 0 {
				now = p.opts.Now().UnixMilli()
			}
			r.TimestampMs = now
		}
		r.Partition = p.id
		r.Offset = base + int64(i)
		if b.Count() > 0 && b.Len()+r.Bytes() > targetFrameBytes {
			p.queueFrameLocked(i - start)
			start = i
			b.ResetAppend(p.walBatch.Begin(), r.Offset, attrs)
		}
		b.Add(int32(i-start), r.TimestampMs, r.Key, r.Value, len(r.Headers))
		for j := range r.Headers {
			b.AddHeader(r.Headers[j].Key, r.Headers[j].Value)
		}
	}
	p.queueFrameLocked(len(recs) - start)
}

// queueFrameLocked queues the builder's frame of n records.
func (p *Partition) queueFrameLocked(n int) {
	f := p.builder.Finish()
	h, _ := frame.ParseHeader(f)
	p.walBatch.End(p.lastWal+uint64(len(p.frames))+1, p.builder.Buf())
	p.frames = append(p.frames, queuedFrame{size: uvarintLen(uint64(len(f))) + len(f), hdr: h})
	p.queued += len(f)
	p.next += int64(n)
}

// lingerFlush writes AcksNone records that waited Options.Linger.
func (p *Partition) lingerFlush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = false
	if p.wal == nil || len(p.frames) == 0 {
		return
	}
	lost := p.unwritten
	if err := p.flushLocked(); err != nil {
		p.opts.Logger.Error("write of acks=0 records failed; they are lost",
			"topic", p.topic.name, "partition", p.id, "records", lost, "err", err)
	}
}

// flushLocked writes the queued frames, publishes them to readers and
// mirrors wal's segment rolls in the segment list.
func (p *Partition) flushLocked() error {
	if len(p.frames) == 0 {
		return nil
	}
	if err := p.wal.WriteBatch(&p.walBatch); err != nil {
		return p.failLocked(fmt.Errorf("append to %s/%d: %w", p.topic.name, p.id, err))
	}
	segBytes := p.segBytes
	p.meta.Lock()
	tail := p.segs[len(p.segs)-1]
	var err error
	// wal rolls before a batch when the tail is over the segment size, and
	// after any entry that brings it to the size (wal.go writeBatch).
	if tail.size > segBytes {
		tail, err = p.rollLocked()
	}
	for i := 0; i < len(p.frames) && err == nil; i++ {
		f := &p.frames[i]
		tail.addBatch(tail.size, f.size, &f.hdr)
		p.lastWal++
		if tail.size >= segBytes {
			tail, err = p.rollLocked()
		}
	}
	p.meta.Unlock()
	p.frames = p.frames[:0]
	p.queued = 0
	if err != nil {
		return p.failLocked(err)
	}
	p.unwritten = 0
	p.hw.Store(p.next)
	p.notify()
	return nil
}

// rollLocked adds the segment wal has just started. p.meta is held.
func (p *Partition) rollLocked() (*segment, error) {
	s := newSegment(p.dir, p.lastWal+1, p.segs[len(p.segs)-1].nextOffset)
	if _, err := os.Stat(s.path); err != nil {
		return nil, fmt.Errorf("BUG: wal did not roll to %s as expected: %w", s.path, err)
	}
	p.segs = append(p.segs, s)
	p.dirDirty.Store(true)
	return s, nil
}

// failLocked handles a write error: the queued records are dropped (those
// of AcksNone appends that returned are counted lost; the caller of the
// Append that wrote tells its own caller), the wal is closed, whatever part
// of the failed write reached the files is cut (cutFailedWrite), and the
// next Append reopens the wal.
func (p *Partition) failLocked(err error) error {
	if p.unwritten > 0 {
		p.stats.lost.Add(p.unwritten)
		p.lostErr = err
		p.unwritten = 0
	}
	p.walBatch.Clear()
	p.frames = p.frames[:0]
	p.queued = 0
	p.next = p.hw.Load()
	if p.wal != nil {
		p.wal.Close() // may fail like the write did; the files are repaired below
		p.wal = nil
	}
	p.failed = err
	p.cutFailedWrite()
	return err
}

// cutFailedWrite cuts what a failed write left in the files now, not only
// when the next Append reopens them: a process that exits after the error
// (a produce command, a program that gives up) would otherwise leave the
// write's complete batches for readers, records its caller was told were
// not appended. The segment list still describes the files as they were
// before the write (it grows only once a write succeeds), so the cut is a
// truncation of the tail to its size and the removal of any segment the
// write rolled to; no scan. If it fails too, the next Append's reopen
// repairs the files (cutting at the high watermark).
func (p *Partition) cutFailedWrite() {
	p.meta.RLock()
	tail := p.segs[len(p.segs)-1]
	path, size, first := tail.path, tail.size, tail.walIndex
	p.meta.RUnlock()
	if os.Truncate(path, size) != nil {
		return
	}
	idxs, err := wal.Segments(p.dir)
	if err != nil {
		return
	}
	for _, idx := range idxs {
		if idx > first {
			os.Remove(filepath.Join(p.dir, wal.SegmentName(idx)))
		}
	}
}

// syncTo returns once every offset below end is fsynced (group commit):
// if no leader is fsyncing, the caller becomes the leader; otherwise it
// waits for the leader's round, which covers it if its write came first,
// and else leads the next round.
func (p *Partition) syncTo(end int64) error {
	p.syncState.Lock()
	defer p.syncState.Unlock()
	for p.synced < end {
		if p.syncing {
			p.syncCond.Wait()
			continue
		}
		p.syncing = true
		p.syncState.Unlock()
		target, err := p.fsyncRound()
		p.syncState.Lock()
		p.syncing = false
		if err == nil && target > p.synced {
			p.synced = target
		}
		p.syncCond.Broadcast()
		if err != nil {
			return err
		}
	}
	return nil
}

// fsyncRound fsyncs everything written so far and returns the offset it
// covers.
func (p *Partition) fsyncRound() (int64, error) {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	// Let appends that are writing right now finish, so that this fsync
	// covers them instead of leaving them to the next one. Bounded: a
	// stream of writers must not hold the sync back.
	for spin := 0; p.writing.Load() > 0 && spin < maxSyncWait; spin++ {
		runtime.Gosched()
	}
	p.mu.Lock()
	if p.wal == nil {
		err := p.failed
		p.mu.Unlock()
		if err == nil {
			err = ErrClosed
		}
		return 0, err
	}
	target := p.hw.Load()
	rolled := p.wal.Rolled()
	p.meta.RLock()
	tail := p.segs[len(p.segs)-1].path
	p.meta.RUnlock()
	dirty := p.dirDirty.Swap(false)
	p.mu.Unlock()
	// Segments before the tail are fsynced in the background when wal
	// rolls them; the round waits for those too.
	if err := rolled.Wait(); err != nil {
		p.fail(err)
		return 0, fmt.Errorf("fsync of a rolled segment of %s/%d: %w", p.topic.name, p.id, err)
	}
	if p.syncPath != tail {
		if p.syncFile != nil {
			p.syncFile.Close()
		}
		f, err := os.Open(tail)
		if err != nil {
			return 0, err
		}
		p.syncFile, p.syncPath = f, tail
	}
	p.stats.fsyncs.Add(1)
	if err := fdatasync(p.syncFile); err != nil {
		p.fail(err)
		return 0, fmt.Errorf("fsync %s: %w", tail, err)
	}
	if dirty {
		if err := atomicfile.SyncDir(p.dir); err != nil {
			p.dirDirty.Store(true)
			return 0, err
		}
	}
	return target, nil
}

func (p *Partition) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wal != nil {
		p.failLocked(err)
	}
}

// Flush writes records queued by AcksNone appends now.
func (p *Partition) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wal == nil {
		return nil
	}
	return p.flushLocked()
}

// Sync fsyncs everything appended so far.
func (p *Partition) Sync() error {
	if err := p.Flush(); err != nil {
		return err
	}
	p.mu.Lock()
	writer := p.wal != nil
	p.mu.Unlock()
	if !writer {
		return nil
	}
	return p.syncTo(p.hw.Load())
}

// notify wakes readers waiting for new records. A wake channel is made
// only when someone waits, so appends without waiting readers allocate
// nothing.
func (p *Partition) notify() {
	if p.waiters.Load() > 0 {
		ch := make(chan struct{})
		old := p.wake.Swap(&ch)
		close(*old)
	}
	if p.listening.Load() > 0 {
		p.listenMu.Lock()
		for _, ch := range p.listeners {
			select {
			case ch <- struct{}{}:
			default: // already signalled
			}
		}
		p.listenMu.Unlock()
	}
}

// Listen signals ch, without blocking, whenever records become readable
// (appended here or, followed through inotify, by another process) and
// when the partition closes, until stop is called. ch should have a
// buffer of 1; one channel may listen to several partitions. It is how a
// goroutine reading many partitions waits for any of them.
func (p *Partition) Listen(ch chan struct{}) (stop func(), err error) {
	p.listenMu.Lock()
	p.listeners = append(p.listeners, ch)
	p.listenMu.Unlock()
	p.listening.Add(1)
	if err := p.follow(); err != nil {
		return nil, err
	}
	return func() {
		p.listening.Add(-1)
		p.listenMu.Lock()
		for i, c := range p.listeners {
			if c == ch {
				p.listeners = append(p.listeners[:i], p.listeners[i+1:]...)
				break
			}
		}
		p.listenMu.Unlock()
	}, nil
}

func (p *Partition) close() error {
	p.closed.Store(true)
	p.mu.Lock()
	var err error
	if p.wal != nil {
		err = p.flushLocked()
		if p.wal != nil {
			if cerr := p.wal.Close(); err == nil && cerr != nil {
				err = cerr
			}
			p.wal = nil
		}
	}
	if p.linger != nil {
		p.linger.Stop()
	}
	if p.lockFile != nil {
		p.lockFile.Close()
		p.lockFile = nil
	}
	p.mu.Unlock()
	p.syncMu.Lock()
	if p.syncFile != nil {
		p.syncFile.Close()
		p.syncFile = nil
	}
	p.syncMu.Unlock()
	ch := make(chan struct{})
	close(*p.wake.Swap(&ch))
	p.listening.Add(1)
	p.notify()
	return err
}
