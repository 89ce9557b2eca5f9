package log

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/fastflow/fastflow/log/internal/frame"
	"github.com/fastflow/fastflow/log/internal/wal"
)

// indexIntervalBytes is how many bytes of batches one sparse index entry
// covers: Kafka's index.interval.bytes default. A seek reads at most this
// much (plus one batch) past the entry it lands on.
const indexIntervalBytes = 4096

// segment is what the log knows of one wal segment file. Its fields are
// guarded by partition.meta, except for path and walIndex, which never
// change.
type segment struct {
	walIndex   uint64 // wal index of the first entry; the file's name
	path       string
	ino        uint64 // inode, to notice a compaction rewrite from another process
	baseOffset int64  // offset of the first batch, or nextOffset when empty
	nextOffset int64  // offset after the last batch
	size       int64  // bytes of complete entries
	entries    int    // wal entries (batches)
	maxTs      int64  // max record timestamp, MinInt64 when empty
	index      []indexEntry
	lastIndex  int64 // file position of the last index entry
}

// indexEntry points at a batch: the sparse offset and time index.
type indexEntry struct {
	offset      int64 // base offset of the batch at pos
	pos         int64 // file position of the batch's wal entry (its length prefix)
	maxTsBefore int64 // max timestamp of the segment's batches before this one
}

func newSegment(dir string, walIndex uint64, next int64) *segment {
	return &segment{
		walIndex:   walIndex,
		path:       filepath.Join(dir, wal.SegmentName(walIndex)),
		baseOffset: next,
		nextOffset: next,
		maxTs:      minTs,
	}
}

const minTs = -1 << 63

// addBatch records a batch written at pos with header h and total wal entry
// size n in the segment's metadata and sparse index.
func (s *segment) addBatch(pos int64, n int, h *frame.Header) {
	if s.entries == 0 || pos-s.lastIndex >= indexIntervalBytes {
		s.index = append(s.index, indexEntry{offset: h.BaseOffset, pos: pos, maxTsBefore: s.maxTs})
		s.lastIndex = pos
	}
	if s.entries == 0 {
		s.baseOffset = h.BaseOffset
	}
	s.entries++
	s.size = pos + int64(n)
	s.nextOffset = h.LastOffset() + 1
	if h.Count > 0 && h.MaxTimestamp > s.maxTs {
		s.maxTs = h.MaxTimestamp
	}
}

// find returns the file position to start reading from for offset o: that
// of the last indexed batch with base offset <= o.
func (s *segment) find(o int64) int64 {
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].offset > o })
	if i == 0 {
		return 0
	}
	return s.index[i-1].pos
}

// indexedOffset is the base offset of the batch that find(o) points at.
func (s *segment) indexedOffset(o int64) int64 {
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].offset > o })
	if i == 0 {
		return s.baseOffset
	}
	return s.index[i-1].offset
}

// findTime returns the file position to start reading from when looking
// for the first record with timestamp >= ts.
func (s *segment) findTime(ts int64) int64 {
	// maxTsBefore is non-decreasing: the first record >= ts is at or after
	// the last entry whose predecessors are all < ts.
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].maxTsBefore >= ts })
	if i == 0 {
		return 0
	}
	return s.index[i-1].pos
}

// CorruptError reports a damaged batch: where it is, and the first offset
// that cannot be served because of it.
type CorruptError struct {
	Path   string // segment file
	Pos    int64  // byte position of the damaged entry in Path
	Offset int64  // first offset at or after which data is unreadable, -1 if unknown
	Err    error
}

func (e *CorruptError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("corrupt batch in %s at byte %d (offset %d): %v", e.Path, e.Pos, e.Offset, e.Err)
	}
	return fmt.Sprintf("corrupt batch in %s at byte %d: %v", e.Path, e.Pos, e.Err)
}

func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// errTorn is a wal entry that ends past the end of the file: a write that
// did not finish.
var errTorn = errors.New("entry ends past the end of the file")

// scanSegment reads the wal entries of s's file from byte from onward and
// adds each to s, stopping at the end of the file or at the first entry
// that is torn, does not decode, does not continue the offsets, or (with
// verify) fails its CRC. It returns a *CorruptError for that entry, nil at
// a clean end. With until >= 0 it also stops, cleanly, before the first
// batch whose base offset is at or past until. buf is scratch space.
func scanSegment(s *segment, from int64, verify bool, until int64, buf *[]byte) error {
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		s.ino = inode(st)
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	pos := from
	for {
		bad := func(err error) error {
			return &CorruptError{Path: s.path, Pos: pos, Offset: s.nextOffset, Err: err}
		}
		size, err := binary.ReadUvarint(br)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return bad(errTorn)
			}
			return bad(err)
		}
		if size < frame.HeaderSize || size > maxEntryBytes {
			return bad(fmt.Errorf("entry size %d out of range", size))
		}
		n := int(size)
		if cap(*buf) < n {
			*buf = make([]byte, n)
		}
		b := (*buf)[:n]
		if _, err := io.ReadFull(br, b); err != nil {
			return bad(errTorn)
		}
		if verify {
			if err := frame.Verify(b); err != nil {
				return bad(err)
			}
		}
		h, err := frame.ParseHeader(b)
		if err != nil {
			return bad(err)
		}
		if until >= 0 && h.BaseOffset >= until {
			return nil
		}
		if s.entries > 0 && h.BaseOffset != s.nextOffset || h.LastOffsetDelta < 0 || h.Count < 0 {
			return bad(fmt.Errorf("batch at offset %d does not follow offset %d", h.BaseOffset, s.nextOffset-1))
		}
		s.addBatch(pos, uvarintLen(size)+n, &h)
		pos = s.size
	}
}

// maxEntryBytes bounds one wal entry: no batch is larger than a record of
// the largest allowed size plus framing; anything above is garbage.
const maxEntryBytes = 1 << 30

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
