package log

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fastflow/fastflow/log/atomicfile"
	"github.com/fastflow/fastflow/log/internal/wal"
)

// A partition's recovery at open: its state file (log start, compaction's
// progress) and its segments, the last one checked entry by entry and a
// torn tail cut, as Kafka's log recovery does.

// partitionState is what the log persists next to the segments: the
// log-start offset that retention reached, which the segments alone do not
// tell once the first remaining segment is empty, and how far compaction
// got (Kafka's cleaner-offset-checkpoint).
type partitionState struct {
	LogStartOffset int64 `json:"log_start_offset"`
	// CleanedOffset is the end of the closed segments the last compaction
	// rewrote: the records from it on are the dirty part of the log.
	CleanedOffset int64 `json:"cleaned_offset,omitempty"`
}

const stateFile = "state" // shorter than 20 bytes: wal ignores it

func (p *Partition) readState() (partitionState, error) {
	var st partitionState
	b, err := os.ReadFile(filepath.Join(p.dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(p.dir, stateFile), err)
	}
	return st, nil
}

func (p *Partition) writeState(st partitionState) error {
	b, _ := json.Marshal(st)
	return atomicfile.Write(filepath.Join(p.dir, stateFile), b)
}

// loadSegments scans the segment files. With repair, the last segment is
// checked entry by entry (CRC included) and cut back to its last good
// entry, and any entry at or past cutAt (>= 0) is cut too; without, a bad
// or incomplete tail is left alone and simply not indexed (another process
// may be writing it).
func (p *Partition) loadSegments(repair bool, cutAt int64) ([]*segment, int64, error) {
	st, err := p.readState()
	if err != nil {
		return nil, 0, err
	}
	idxs, err := wal.Segments(p.dir)
	if err != nil {
		return nil, 0, err
	}
	next := st.LogStartOffset
	var segs []*segment
	var buf []byte
	for i, idx := range idxs {
		s := newSegment(p.dir, idx, next)
		// The last two segments may end torn: the tail, and the one before
		// it if the power failed while its background fsync was pending
		// (wal keeps at most one pending).
		last, recent := i == len(idxs)-1, i >= len(idxs)-2
		err := scanSegment(s, 0, repair && recent, -1, &buf)
		var ce *CorruptError
		switch {
		case err == nil:
		case errors.As(err, &ce) && last:
			if repair {
				if err := p.cutTail(s, ce); err != nil {
					return nil, 0, err
				}
			}
		case errors.As(err, &ce) && recent:
			// Everything after the tear goes too, the tail segment with it:
			// offsets stay dense. None of it was acknowledged with acks=all,
			// which waits for this segment's fsync. A follower just sees
			// the log end there.
			if repair {
				if err := p.cutTail(s, ce); err != nil {
					return nil, 0, err
				}
				if err := os.Remove(filepath.Join(p.dir, wal.SegmentName(idxs[i+1]))); err != nil {
					return nil, 0, err
				}
				p.opts.Logger.Warn("log recovery: removed the segment after a torn one",
					"topic", p.topic.name, "partition", p.id, "file", wal.SegmentName(idxs[i+1]))
				if err := atomicfile.SyncDir(p.dir); err != nil {
					return nil, 0, err
				}
			}
			segs = append(segs, s)
			return segs, max(st.LogStartOffset, firstOffset(segs, st.LogStartOffset)), nil
		default:
			return nil, 0, err
		}
		if repair && cutAt >= 0 && s.nextOffset > cutAt {
			if err := p.cutFrom(s, idxs[i+1:], cutAt, &buf); err != nil {
				return nil, 0, err
			}
			segs = append(segs, s)
			break
		}
		segs = append(segs, s)
		next = s.nextOffset
	}
	return segs, max(st.LogStartOffset, firstOffset(segs, st.LogStartOffset)), nil
}

func firstOffset(segs []*segment, def int64) int64 {
	if len(segs) == 0 {
		return def
	}
	return segs[0].baseOffset
}

// cutTail truncates s's file at the corrupt entry ce and warns, naming the
// partition and the offsets dropped.
func (p *Partition) cutTail(s *segment, ce *CorruptError) error {
	st, err := os.Stat(s.path)
	if err != nil {
		return err
	}
	dropped := st.Size() - ce.Pos
	p.opts.Logger.Warn("log recovery: cutting torn or corrupt tail",
		"topic", p.topic.name, "partition", p.id, "file", s.path,
		"at_byte", ce.Pos, "dropped_bytes", dropped, "dropped_from_offset", ce.Offset, "cause", ce.Err.Error())
	if err := os.Truncate(s.path, ce.Pos); err != nil {
		return fmt.Errorf("cut torn tail of %s: %w", s.path, err)
	}
	return syncPath(s.path)
}

// cutFrom drops every batch at or past offset cutAt: those of a write that
// failed, which were never acknowledged. s is the segment holding cutAt;
// the segment files after it are removed.
func (p *Partition) cutFrom(s *segment, later []uint64, cutAt int64, buf *[]byte) error {
	for _, idx := range later {
		if err := os.Remove(filepath.Join(p.dir, wal.SegmentName(idx))); err != nil {
			return err
		}
	}
	trim := newSegment(p.dir, s.walIndex, s.baseOffset)
	if err := scanSegment(trim, 0, false, cutAt, buf); err != nil {
		return err
	}
	p.opts.Logger.Warn("log recovery: dropping the unacknowledged batches of a failed write",
		"topic", p.topic.name, "partition", p.id, "file", s.path, "from_offset", cutAt, "dropped_bytes", s.size-trim.size)
	if err := os.Truncate(s.path, trim.size); err != nil {
		return err
	}
	*s = *trim
	return syncPath(s.path)
}

// loadFollower (re)loads the segment list as the files are, without
// repairing: how a process that does not write the partition sees it.
func (p *Partition) loadFollower() error {
	segs, start, err := p.loadSegments(false, -1)
	if err != nil {
		return err
	}
	p.meta.Lock()
	p.segs = segs
	p.meta.Unlock()
	p.start.Store(start)
	p.hw.Store(endOffset(segs, start))
	return nil
}

func endOffset(segs []*segment, start int64) int64 {
	if len(segs) == 0 {
		return start
	}
	return segs[len(segs)-1].nextOffset
}
