package log

import (
	"context"
	"errors"
	"io"
	"os"

	"golang.org/x/sys/cpu"
	"golang.org/x/sys/unix"

	"github.com/fastflow/fastflow/log/internal/frame"
	"github.com/fastflow/fastflow/log/internal/wal"
)

// readBufBytes is a reader's initial buffer: one pread fills it with many
// batches. It grows for a batch that does not fit.
const readBufBytes = 256 << 10

// mapWindowBytes is how much of a segment file a mapped reader maps at
// once (more for a larger entry): bounded, so that reading a partition
// from end to end keeps a few MiB mapped, not its segments.
const mapWindowBytes = 4 << 20

// defaultReadRecords bounds one Read when dst has no spare capacity.
const defaultReadRecords = 512

// Reader reads a partition in offset order, from any offset between the
// log-start offset and the high watermark, and can wait at the end for
// new records. It reads the segment files with pread (or through maps,
// NewMappedReader), through the sparse index, so readers at different
// positions do not disturb each other or the writer.
//
// A Reader cannot be used from concurrent goroutines; use one per
// goroutine. The Key, Value and Headers of the records a Read returns
// point into the Reader's buffer: they are valid until the next call on
// the Reader. A mapped reader (NewMappedReader) maps the files instead.
type Reader struct {
	// Readers of different goroutines are often allocated side by side,
	// and dec is written per record: the pads keep them off each other's
	// cache lines.
	_      cpu.CacheLinePad
	p      *Partition
	offset int64 // next offset to return

	f       *os.File
	walIdx  uint64 // segment of f
	pos     int64  // file position of the next batch to read
	buf     []byte
	mapped  bool   // buf is (in) mapping, a window of f mapped read-only
	mapping []byte // nil when nothing is mapped
	bufPos  int64  // file position of buf[0]
	bufN    int
	dec     frame.Decoder
	headers []Header
	// A Read that stops inside a batch leaves dec there, holding the
	// record at offset (decoded, not returned), and midAt at the batch's
	// first byte in buf: the next Read goes on from it instead of checking
	// the batch's CRC again and decoding its first records again to skip
	// them. Anything that moves r or refills buf sets midAt to nil.
	midAt *byte
	_     cpu.CacheLinePad
}

// NewReader returns a Reader positioned at offset, which must lie between
// the log-start offset and the high watermark.
func (p *Partition) NewReader(offset int64) (*Reader, error) {
	r := &Reader{p: p}
	if err := r.SeekOffset(offset); err != nil {
		return nil, err
	}
	return r, nil
}

// NewMappedReader returns a Reader positioned at offset that reads the
// segment files through read-only memory maps of a few MiB at a time
// instead of copying them into its buffer with pread: the records it
// returns point into the page cache itself, with no copy. Whether that
// is faster depends on what a page fault costs: on one VM a pipeline ran
// ~7% faster mapped, on another reading mapped cost 2.7x what pread did
// (BenchmarkReadMapped against BenchmarkRead), so pipelines use NewReader.
//
// Two things are sharper than with NewReader. The records of a Read are
// unmapped by a later call (a Read past the window, Close): touching them
// then faults and crashes the program, where NewReader's would only hold
// other bytes. And if a file shrinks under the mapping — another process
// writing the partition cuts the tail of a failed write that this one
// was reading — touching the cut bytes faults too (SIGBUS). A goroutine
// that cannot rule that out calls debug.SetPanicOnFault(true), so that
// the fault is a panic it can recover (a runtime.Error with an Addr
// method), as the pipeline's workers do.
func (p *Partition) NewMappedReader(offset int64) (*Reader, error) {
	r := &Reader{p: p, mapped: true}
	if err := r.SeekOffset(offset); err != nil {
		return nil, err
	}
	return r, nil
}

// Offset is the offset of the next record Read returns.
func (r *Reader) Offset() int64 { return r.offset }

// Partition is the partition r reads.
func (r *Reader) Partition() *Partition { return r.p }

// SeekOffset positions r at offset, which must lie between the log-start offset
// and the high watermark (both included); otherwise it returns an
// *OffsetOutOfRangeError and r does not move.
func (r *Reader) SeekOffset(offset int64) error {
	if err := r.p.checkRange(offset); err != nil {
		return err
	}
	r.closeFile()
	r.offset = offset
	return nil
}

func (p *Partition) checkRange(offset int64) error {
	start, end := p.start.Load(), p.hw.Load()
	if offset < start || offset > end {
		return &OffsetOutOfRangeError{Topic: p.topic.name, Partition: p.id, Offset: offset, Start: start, End: end}
	}
	return nil
}

// SeekTime positions r at the first record whose timestamp is at or after
// tsMs, or at the high watermark if there is none: Kafka's ListOffsets by
// timestamp.
func (r *Reader) SeekTime(tsMs int64) error {
	o, err := r.p.OffsetForTime(tsMs)
	if err != nil {
		return err
	}
	return r.SeekOffset(o)
}

// Close releases the Reader's file.
func (r *Reader) Close() error {
	r.closeFile()
	return nil
}

func (r *Reader) closeFile() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	r.unmap()
	r.bufN = 0
	r.midAt = nil
}

func (r *Reader) unmap() {
	if r.mapping != nil {
		unix.Munmap(r.mapping) // fails only for a bad address or length
		r.mapping, r.buf, r.bufN = nil, nil, 0
	}
}

// Read appends to dst the records available now from r's offset, up to
// cap(dst) (or 512 more if dst is full), and advances r past them. At the
// high watermark it returns dst unchanged and no error. It reads from one
// buffer fill at a time, so a call may return fewer records than there
// are; call again.
func (r *Reader) Read(dst []Record) ([]Record, error) {
	limit := cap(dst)
	if limit == len(dst) {
		limit = len(dst) + defaultReadRecords
	}
	hw := r.p.hw.Load()
	if r.offset >= hw {
		return dst, nil
	}
	if start := r.p.start.Load(); r.offset < start {
		r.closeFile()
		return dst, &OffsetOutOfRangeError{Topic: r.p.topic.name, Partition: r.p.id, Offset: r.offset, Start: start, End: hw}
	}
	r.headers = r.headers[:0]
	n0 := len(dst)
	for len(dst) < limit && r.offset < hw {
		if r.f == nil {
			if err := r.open(r.offset); err != nil {
				return dst, err
			}
		}
		// Refilling the buffer would overwrite the records already
		// returned by this call: only the first batch may refill.
		entry, size, err := r.entry(len(dst) == n0)
		if err != nil {
			return dst, err
		}
		if entry == nil {
			if len(dst) > n0 || !r.nextSegment() {
				break
			}
			continue
		}
		if dst, err = r.decode(dst, entry, size, hw, limit); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// decode appends the records of the batch entry (at r.pos) from r.offset
// on, below hw, up to limit.
func (r *Reader) decode(dst []Record, entry []byte, size int, hw int64, limit int) ([]Record, error) {
	bad := func(err error) error {
		return &CorruptError{Path: r.f.Name(), Pos: r.pos, Offset: r.offset, Err: err}
	}
	d := &r.dec
	resume := r.midAt == &entry[0] && d.Offset == r.offset
	r.midAt = nil
	if !resume {
		if err := frame.Verify(entry); err != nil {
			return dst, bad(err)
		}
		if err := d.Init(entry); err != nil {
			return dst, bad(err)
		}
	}
	for resume || d.Next() {
		resume = false
		if d.Offset < r.offset {
			continue
		}
		if d.Offset >= hw || len(dst) == limit {
			r.offset = d.Offset
			r.midAt = &entry[0]
			return dst, nil
		}
		var hs []Header
		if d.HeaderCount() > 0 {
			h := len(r.headers)
			for it := d.Headers(); it.Next(); {
				r.headers = append(r.headers, Header{Key: it.Key, Value: it.Value})
			}
			hs = r.headers[h:len(r.headers):len(r.headers)]
		}
		dst = append(dst, Record{
			Partition:   r.p.id,
			Offset:      d.Offset,
			TimestampMs: d.TimestampMs,
			Key:         d.Key,
			Value:       d.Value,
			Headers:     hs,
		})
	}
	if err := d.Err(); err != nil {
		return dst, bad(err)
	}
	// A seek may land past the whole batch: never move back.
	r.offset = max(r.offset, d.LastOffset()+1)
	r.pos += int64(size)
	return dst, nil
}

// entry returns the wal entry at r.pos (its frame, and its size with the
// length prefix), reading the file if the buffer does not hold it and
// refill allows. It returns a nil entry at the end of the file's complete
// entries.
func (r *Reader) entry(refill bool) ([]byte, int, error) {
	if off := r.pos - r.bufPos; off >= 0 && off < int64(r.bufN) {
		if e, n := parseEntry(r.buf[off:r.bufN]); e != nil {
			return e, n, nil
		}
	}
	if !refill {
		return nil, 0, nil
	}
	r.midAt = nil // the buffer is about to change under the decoder
	if r.mapped {
		return r.mapEntry()
	}
	if r.buf == nil {
		r.buf = make([]byte, readBufBytes)
	}
	for {
		n, err := r.f.ReadAt(r.buf, r.pos)
		if err != nil && err != io.EOF {
			return nil, 0, err
		}
		r.bufPos, r.bufN = r.pos, n
		e, need, cerr := r.firstEntry()
		if e != nil || cerr != nil || need == 0 {
			return e, need, cerr
		}
		if need <= len(r.buf) || err == io.EOF {
			return nil, 0, nil // the rest is not written yet
		}
		r.buf = make([]byte, need+readBufBytes)
	}
}

// mapEntry is entry's refill for a mapped reader: it maps the file from
// r.pos on, mapWindowBytes or the whole entry there if that is larger, up
// to the file's end.
func (r *Reader) mapEntry() ([]byte, int, error) {
	r.unmap()
	st, err := r.f.Stat()
	if err != nil {
		return nil, 0, err
	}
	size := st.Size()
	from := r.pos &^ int64(os.Getpagesize()-1) // mappings start on a page
	length := int64(mapWindowBytes)
	for {
		end := min(size, from+length)
		if end <= r.pos {
			return nil, 0, nil // nothing there yet
		}
		m, err := unix.Mmap(int(r.f.Fd()), from, int(end-from), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, 0, &os.PathError{Op: "mmap", Path: r.f.Name(), Err: err}
		}
		r.mapping = m
		r.buf, r.bufPos, r.bufN = m[r.pos-from:], r.pos, int(end-r.pos)
		e, need, cerr := r.firstEntry()
		if e != nil || cerr != nil {
			return e, need, cerr
		}
		if need == 0 || end == size {
			return nil, 0, nil // not (all) written yet
		}
		r.unmap()
		length = r.pos - from + int64(need)
	}
}

// firstEntry returns the wal entry at the start of the buffer: its frame
// and its size with the length prefix. If the buffer holds only part of
// it, the entry is nil and need is its size; need is 0 if the buffer does
// not hold its length either.
func (r *Reader) firstEntry() (e []byte, need int, err error) {
	b := r.buf[:r.bufN]
	size, k := uvarint(b)
	if k < 0 || k > 0 && (size < frame.HeaderSize || size > maxEntryBytes) {
		return nil, 0, &CorruptError{Path: r.f.Name(), Pos: r.pos, Offset: r.offset, Err: errors.New("bad entry length")}
	}
	if k == 0 {
		return nil, 0, nil // nothing (complete) there yet
	}
	need = k + int(size)
	if need <= len(b) {
		return b[k:need:need], need, nil
	}
	return nil, need, nil
}

func parseEntry(b []byte) ([]byte, int) {
	size, k := uvarint(b)
	if k <= 0 || uint64(len(b)-k) < size {
		return nil, 0
	}
	need := k + int(size)
	return b[k:need:need], need
}

// open opens the segment holding offset o and positions r at the indexed
// batch at or before it.
func (r *Reader) open(o int64) error {
	p := r.p
	for attempt := 0; ; attempt++ {
		p.meta.RLock()
		s := p.segmentFor(o)
		if s == nil {
			p.meta.RUnlock()
			return p.checkRange(o)
		}
		walIdx, pos, want := s.walIndex, s.find(o), s.indexedOffset(o)
		// Opened under meta, so that compaction cannot swap the file
		// between the lookup and the open.
		f, err := os.Open(s.path)
		p.meta.RUnlock()
		if errors.Is(err, os.ErrNotExist) && attempt < 3 {
			// Removed by retention just now.
			if err := p.checkRange(o); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		r.f, r.walIdx, r.pos, r.bufN = f, walIdx, pos, 0
		// Another process may have compacted the file since this one
		// indexed it: the batch at pos must be the one the index names.
		if attempt < 3 && !r.batchAt(want) {
			r.closeFile()
			p.refresh(map[string]bool{wal.SegmentName(walIdx): true})
			continue
		}
		return nil
	}
}

// batchAt reports whether the entry at r.pos is a batch with base offset
// want (or there is nothing complete there yet).
func (r *Reader) batchAt(want int64) bool {
	e, _, err := r.entry(true)
	if err != nil || e == nil {
		return err == nil
	}
	h, err := frame.ParseHeader(e)
	return err == nil && h.BaseOffset == want
}

// nextSegment moves r to the segment that holds its offset, if that is not
// the one it reads; it reports whether it moved.
func (r *Reader) nextSegment() bool {
	r.p.meta.RLock()
	s := r.p.segmentFor(r.offset)
	moved := s != nil && s.walIndex != r.walIdx
	r.p.meta.RUnlock()
	if !moved {
		return false
	}
	r.closeFile()
	return r.open(r.offset) == nil
}

// segmentFor returns the segment holding offset o: the first whose next
// offset is past o, or the last. p.meta is held.
func (p *Partition) segmentFor(o int64) *segment {
	segs := p.segs
	lo, hi := 0, len(segs)
	for lo < hi {
		m := (lo + hi) / 2
		if segs[m].nextOffset > o {
			hi = m
		} else {
			lo = m + 1
		}
	}
	if lo == len(segs) {
		if lo == 0 {
			return nil
		}
		return segs[lo-1]
	}
	return segs[lo]
}

// Wait blocks until a record at r's offset is readable, ctx is done (its
// error is returned), or the partition is closed (ErrClosed). It does not
// poll: appends in this process wake it directly, appends by another
// process through inotify.
func (r *Reader) Wait(ctx context.Context) error {
	return r.p.waitFor(ctx, r.offset)
}

// Poll waits for records (see Wait) and reads them (see Read).
func (r *Reader) Poll(ctx context.Context, dst []Record) ([]Record, error) {
	for {
		if err := r.Wait(ctx); err != nil {
			return dst, err
		}
		n := len(dst)
		dst, err := r.Read(dst)
		if err != nil || len(dst) > n {
			return dst, err
		}
	}
}

func (p *Partition) waitFor(ctx context.Context, offset int64) error {
	p.waiters.Add(1)
	defer p.waiters.Add(-1)
	watched := false
	for {
		ch := *p.wake.Load()
		if p.hw.Load() > offset {
			return nil
		}
		if p.closed.Load() {
			return ErrClosed
		}
		if !watched {
			watched = true
			if err := p.follow(); err != nil {
				return err
			}
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// OffsetOfMaxTimestamp returns the offset and timestamp of the first
// record that holds the partition's largest timestamp (Kafka's ListOffsets
// MAX_TIMESTAMP, KIP-734: with timestamps out of order, not the newest
// record), or -1, -1 if the partition holds no record.
func (p *Partition) OffsetOfMaxTimestamp() (offset, tsMs int64, err error) {
	p.meta.RLock()
	maxTs, found := int64(0), false
	for _, s := range p.segs {
		if s.entries > 0 && (!found || s.maxTs > maxTs) {
			maxTs, found = s.maxTs, true
		}
	}
	p.meta.RUnlock()
	if !found {
		return -1, -1, nil
	}
	// No record holds a later time: the first at or after it holds it.
	o, err := p.OffsetForTime(maxTs)
	if err != nil {
		return -1, -1, err
	}
	if o >= p.hw.Load() {
		return -1, -1, nil
	}
	return o, maxTs, nil
}

// OffsetForTime returns the first offset whose record has a timestamp at
// or after tsMs, or the high watermark if none has (Kafka's ListOffsets).
func (p *Partition) OffsetForTime(tsMs int64) (int64, error) {
	p.meta.RLock()
	var seg *segment
	for _, s := range p.segs {
		if s.entries > 0 && s.maxTs >= tsMs {
			seg = s
			break
		}
	}
	if seg == nil {
		p.meta.RUnlock()
		return p.hw.Load(), nil
	}
	path, walIdx, pos := seg.path, seg.walIndex, seg.findTime(tsMs)
	from := seg.baseOffset
	for _, e := range seg.index {
		if e.pos == pos {
			from = e.offset
		}
	}
	p.meta.RUnlock()
	if from < p.start.Load() {
		from = p.start.Load()
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	r := &Reader{p: p, offset: from, f: f, walIdx: walIdx, pos: pos}
	defer r.Close()
	recs := make([]Record, 0, 256)
	for {
		var err error
		recs, err = r.Read(recs[:0])
		if err != nil {
			return 0, err
		}
		if len(recs) == 0 {
			return p.hw.Load(), nil
		}
		for i := range recs {
			if recs[i].TimestampMs >= tsMs {
				return recs[i].Offset, nil
			}
		}
	}
}
