// Package wal writes tidwall/wal segment files without tidwall/wal's
// in-memory copy of the active segment.
//
// It is a trimmed fork of github.com/tidwall/wal v1.2.1 (MIT License,
// Copyright (c) 2019 Joshua J Baker; see LICENSE) that keeps its binary
// file format, file names, roll rule and START-file truncation byte for
// byte, so the files it writes are tidwall/wal's and either can open the
// other's directory (wal_test.go checks it against the upstream package).
//
// Why the fork: upstream appends every write to a []byte holding the whole
// active segment, for its Read. Growing that slice by append allocates
// about five bytes for each byte written and copies the segment at every
// growth, which was most of the log's append time and all of its garbage,
// and it holds up to a segment (plus a cached one) in memory per partition.
// The log never calls Read: its readers pread the files and keep their own
// sparse index. So this package writes entries straight from the batch to
// the file, and it drops what the log does not use: Read, the segment
// cache, TruncateBack, the JSON format and the internal lock (a partition
// serializes its calls). Two things it adds: a rolled segment is fsynced in
// the background, as Kafka flushes one, with Rolled to wait for it; and a
// caller may build an entry in place in the batch (Batch.Begin and End).
// Truncating the front at a segment's start deletes files and copies
// nothing.
//
// The file format: a segment is named by the 20-digit index of its first
// entry; an entry is a uvarint of the data's length followed by the data.
package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/fastflow/fastflow/log/atomicfile"
)

var (
	// ErrCorrupt is returned when a segment ends inside an entry, or after
	// a failed truncation left the files in a state this Log cannot follow
	// (Close and Open again).
	ErrCorrupt = errors.New("log corrupt")
	// ErrClosed is returned by every call on a closed Log.
	ErrClosed = errors.New("log closed")
	// ErrOutOfOrder is returned by WriteBatch when an entry's index is not
	// the one after the previous entry's.
	ErrOutOfOrder = errors.New("out of order")
	// ErrOutOfRange is returned by TruncateFront for an index outside
	// [FirstIndex, LastIndex+1].
	ErrOutOfRange = errors.New("out of range")
)

// Options for Open. The zero value of a field takes upstream's default.
type Options struct {
	// NoSync leaves fsync to the caller: WriteBatch does not fsync. The
	// finished segment is still fsynced when the log rolls to the next.
	NoSync bool
	// SegmentSize is the size at which the log rolls to a new segment
	// file. Default 20 MB.
	SegmentSize int
	// DirPerms and FilePerms are the modes of created directories and
	// segment files. Default 0750 and 0640. (A segment rewritten by a
	// mid-segment TruncateFront is 0644, atomicfile's mode.)
	DirPerms  os.FileMode
	FilePerms os.FileMode
}

// Log is the write side of a directory of segment files. It is not safe
// for concurrent use.
type Log struct {
	path       string
	opts       Options
	closed     bool
	corrupt    bool
	segments   []segment
	firstIndex uint64
	lastIndex  uint64
	sfile      *os.File // the tail segment, open for appending
	ssize      int      // bytes in the tail segment
	rolled     *RollSync
}

// RollSync is the fsync of the segments rolled so far, which runs in the
// background, as Kafka flushes a rolled segment: a roll does not stall the
// write that caused it (unless the previous roll's fsync is still running).
type RollSync struct {
	done chan struct{}
	err  error
}

// Wait returns once the segments are fsynced and closed, with the first
// error of their fsyncs or closes.
func (r *RollSync) Wait() error {
	if r == nil {
		return nil
	}
	<-r.done
	return r.err
}

type segment struct {
	index uint64 // of its first entry
	path  string
}

// Open opens the log in the directory path, creating it if needed. Like
// upstream, it completes a truncation that a crash interrupted (START and
// END files) and refuses a tail segment that ends inside an entry
// (ErrCorrupt): repair the tail before opening.
//
// An empty log has FirstIndex 1 and LastIndex 0, as upstream's with
// AllowEmpty.
func Open(path string, opts *Options) (*Log, error) {
	l := &Log{opts: Options{SegmentSize: 20971520, DirPerms: 0o750, FilePerms: 0o640}}
	if opts != nil {
		l.opts.NoSync = opts.NoSync
		if opts.SegmentSize > 0 {
			l.opts.SegmentSize = opts.SegmentSize
		}
		if opts.DirPerms != 0 {
			l.opts.DirPerms = opts.DirPerms
		}
		if opts.FilePerms != 0 {
			l.opts.FilePerms = opts.FilePerms
		}
	}
	var err error
	if l.path, err = filepath.Abs(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(l.path, l.opts.DirPerms); err != nil {
		return nil, err
	}
	if err := l.load(); err != nil {
		if l.sfile != nil {
			l.sfile.Close()
		}
		return nil, err
	}
	return l, nil
}

// load finishes an interrupted truncation, lists the segments and opens
// the tail for appending.
func (l *Log) load() error {
	if err := Recover(l.path); err != nil {
		return err
	}
	idxs, err := Segments(l.path)
	if err != nil {
		return err
	}
	if len(idxs) == 0 {
		l.segments = append(l.segments, segment{index: 1, path: filepath.Join(l.path, SegmentName(1))})
		l.firstIndex, l.lastIndex = 1, 0
		l.sfile, err = os.OpenFile(l.segments[0].path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, l.opts.FilePerms)
		return err
	}
	for _, idx := range idxs {
		l.segments = append(l.segments, segment{index: idx, path: filepath.Join(l.path, SegmentName(idx))})
	}
	l.firstIndex = l.segments[0].index
	return l.openTail()
}

// Segments returns the indexes of the segment files in dir, in order,
// ignoring truncation files (see Recover).
func Segments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || len(name) != 20 {
			continue
		}
		idx, err := strconv.ParseUint(name, 10, 64)
		if err != nil || idx == 0 {
			continue
		}
		out = append(out, idx)
	}
	slices.Sort(out)
	return out, nil
}

// Recover completes, in dir, a front or back truncation that a crash
// interrupted, as upstream's Open does: with a START file, the segments
// up to its index are deleted and START becomes a segment; with an END
// file, the segments from its index on are deleted and END becomes one.
// Those files are written atomically (temp file, fsync, rename), so a
// leftover temp file (upstream's .TEMP, the fork's .START.tmp) is an
// unfinished copy and is removed. Open calls it; a caller that reads the
// segments before opening the Log calls it first.
func Recover(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var start, end string
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".TEMP") || strings.HasSuffix(name, ".START.tmp"):
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return err
			}
		case len(name) == 26 && strings.HasSuffix(name, ".START"):
			start = name
		case len(name) == 24 && strings.HasSuffix(name, ".END") && end == "":
			end = name
		}
	}
	if start != "" && end != "" {
		return fmt.Errorf("%s: both %s and %s present: %w", dir, start, end, ErrCorrupt)
	}
	name, drop := start, func(s, idx uint64) bool { return s <= idx }
	if end != "" {
		name, drop = end, func(s, idx uint64) bool { return s >= idx }
	}
	if name == "" {
		return nil
	}
	segs, err := Segments(dir)
	if err != nil {
		return err
	}
	idx, _ := strconv.ParseUint(name[:20], 10, 64)
	for _, s := range segs {
		if drop(s, idx) {
			if err := os.Remove(filepath.Join(dir, SegmentName(s))); err != nil {
				return err
			}
		}
	}
	return os.Rename(filepath.Join(dir, name), filepath.Join(dir, name[:20]))
}

// openTail counts the entries of the tail segment, streaming the file
// rather than holding it, and opens it for appending.
func (l *Log) openTail() error {
	tail := l.segments[len(l.segments)-1]
	f, err := os.OpenFile(tail.path, os.O_RDWR, l.opts.FilePerms)
	if err != nil {
		return err
	}
	entries, size, err := scanEntries(f)
	if err != nil {
		f.Close()
		return err
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return err
	}
	l.sfile, l.ssize = f, int(size)
	l.lastIndex = tail.index + uint64(entries) - 1
	return nil
}

// scanEntries counts the entries of a segment file and their bytes. A file
// ending inside an entry is ErrCorrupt.
func scanEntries(f *os.File) (entries int, size int64, err error) {
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		n, err := binary.ReadUvarint(r)
		if err == io.EOF {
			return entries, size, nil
		}
		if err != nil || n > uint64(1<<62) {
			return 0, 0, ErrCorrupt
		}
		if _, err := r.Discard(int(n)); err != nil {
			return 0, 0, ErrCorrupt
		}
		entries++
		size += int64(uvarintLen(n)) + int64(n)
	}
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// SegmentName is the 20-digit file name of the segment starting at index.
func SegmentName(index uint64) string {
	return fmt.Sprintf("%020d", index)
}

// Close fsyncs and closes the tail segment, after the rolled ones.
func (l *Log) Close() error {
	if l.closed {
		if l.corrupt {
			return ErrCorrupt
		}
		return ErrClosed
	}
	l.closed = true
	serr := l.rolled.Wait()
	if err := l.sfile.Sync(); serr == nil {
		serr = err
	}
	if err := l.sfile.Close(); serr == nil {
		serr = err
	}
	if serr != nil {
		return serr
	}
	if l.corrupt {
		return ErrCorrupt
	}
	return nil
}

func (l *Log) usable() error {
	if l.corrupt {
		return ErrCorrupt
	}
	if l.closed {
		return ErrClosed
	}
	return nil
}

// Batch is a run of entries for WriteBatch, held already encoded as they
// go to the file.
type Batch struct {
	entries []batchEntry
	data    []byte // the entries' encodings, back to back
}

type batchEntry struct {
	index uint64
	end   int // of the entry's encoding in data
}

// Write adds an entry to the batch, copying data.
func (b *Batch) Write(index uint64, data []byte) {
	b.data = binary.AppendUvarint(b.data, uint64(len(data)))
	b.data = append(b.data, data...)
	b.entries = append(b.entries, batchEntry{index, len(b.data)})
}

// prefixRoom is the room Begin leaves for an entry's length: a uvarint of
// 3 bytes holds up to 2 MiB.
const prefixRoom = 3

// Begin returns the batch's buffer with room for the next entry's length
// after it. The caller appends the entry's data to the returned slice and
// passes the result to End: the entry is built in place, not copied as by
// Write. No other call on the batch may come between the two.
func (b *Batch) Begin() []byte {
	return append(b.data, 0, 0, 0)
}

// End adds the entry that buf, Begin's slice with the data appended,
// holds. If the length's uvarint is not 3 bytes, the data moves to fit it.
func (b *Batch) End(index uint64, buf []byte) {
	start := len(b.data) + prefixRoom // of the data in buf
	n := uint64(len(buf) - start)
	if k := uvarintLen(n); k < prefixRoom {
		copy(buf[len(b.data)+k:], buf[start:])
		buf = buf[:len(buf)-(prefixRoom-k)]
	} else if k > prefixRoom {
		buf = append(buf, make([]byte, k-prefixRoom)...)
		copy(buf[len(b.data)+k:], buf[start:len(buf)-(k-prefixRoom)])
	}
	binary.PutUvarint(buf[len(b.data):], n)
	b.data = buf
	b.entries = append(b.entries, batchEntry{index, len(b.data)})
}

// Clear empties the batch for reuse.
func (b *Batch) Clear() {
	b.entries = b.entries[:0]
	b.data = b.data[:0]
}

// WriteBatch appends the batch's entries and clears the batch. The first
// entry's index must be LastIndex+1 and the others follow it.
//
// Segments roll as upstream's do: before the batch if the tail is already
// over SegmentSize, and after any entry that brings it to SegmentSize, so
// an entry never spans two files. A rolled segment is fsynced and closed in
// the background (see Rolled).
func (l *Log) WriteBatch(b *Batch) error {
	if err := l.usable(); err != nil {
		return err
	}
	if len(b.entries) == 0 {
		return nil
	}
	for i := range b.entries {
		if b.entries[i].index != l.lastIndex+uint64(i+1) {
			return ErrOutOfOrder
		}
	}
	if l.ssize > l.opts.SegmentSize {
		if err := l.cycle(); err != nil {
			return err
		}
	}
	mark := 0 // start of the bytes not yet written
	for i := range b.entries {
		e := &b.entries[i]
		if l.ssize+e.end-mark < l.opts.SegmentSize {
			continue
		}
		if _, err := l.sfile.Write(b.data[mark:e.end]); err != nil {
			return err
		}
		l.ssize += e.end - mark
		l.lastIndex = e.index
		mark = e.end
		if err := l.cycle(); err != nil {
			return err
		}
	}
	if mark < len(b.data) {
		if _, err := l.sfile.Write(b.data[mark:]); err != nil {
			return err
		}
		l.ssize += len(b.data) - mark
		l.lastIndex = b.entries[len(b.entries)-1].index
	}
	if !l.opts.NoSync {
		if err := l.rolled.Wait(); err != nil {
			return err
		}
		if err := l.sfile.Sync(); err != nil {
			return err
		}
	}
	b.Clear()
	return nil
}

// Rolled returns the fsync of every segment rolled so far (nil if none
// was): a caller that promises durability waits for it besides fsyncing
// the tail. It may be waited on concurrently with writes.
func (l *Log) Rolled() *RollSync {
	return l.rolled
}

// cycle hands the tail to a background fsync and starts a segment at
// LastIndex+1. It first waits for the previous roll's fsync: at most one
// rolled segment is ever unsynced, so after a power failure only the last
// two segments can end torn. Each RollSync covers the earlier ones.
func (l *Log) cycle() error {
	if err := l.rolled.Wait(); err != nil {
		return err
	}
	s := segment{index: l.lastIndex + 1, path: filepath.Join(l.path, SegmentName(l.lastIndex+1))}
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, l.opts.FilePerms)
	if err != nil {
		return err // the tail stays open: the next write retries the roll, or the caller reopens
	}
	prev, old := l.rolled, l.sfile
	r := &RollSync{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = prev.Wait()
		if err := old.Sync(); r.err == nil {
			r.err = err
		}
		if err := old.Close(); r.err == nil {
			r.err = err
		}
	}()
	l.rolled = r
	l.sfile, l.ssize = f, 0
	l.segments = append(l.segments, s)
	return nil
}

// FirstIndex is the index of the first entry (LastIndex+1 when empty).
func (l *Log) FirstIndex() (uint64, error) {
	if err := l.usable(); err != nil {
		return 0, err
	}
	return l.firstIndex, nil
}

// LastIndex is the index of the last entry (FirstIndex-1 when empty).
func (l *Log) LastIndex() (uint64, error) {
	if err := l.usable(); err != nil {
		return 0, err
	}
	return l.lastIndex, nil
}

// TruncateFront removes the entries before index; index may be
// LastIndex+1, which empties the log. When index starts a segment, the
// segments before it are deleted, oldest first, and nothing is copied —
// the log truncates only there. Otherwise, as upstream, the entries from
// index on are copied to a START file (written atomically), the older
// segments are deleted and START is renamed; Open finishes that sequence
// after a crash.
func (l *Log) TruncateFront(index uint64) (err error) {
	if err := l.usable(); err != nil {
		return err
	}
	if index < l.firstIndex || index > l.lastIndex+1 {
		return ErrOutOfRange
	}
	if index == l.firstIndex {
		return nil
	}
	segIdx := l.findSegment(index)
	// From here a failure leaves files and memory apart: ErrCorrupt until
	// the caller reopens, as upstream.
	defer func() {
		if err != nil {
			l.corrupt = true
		}
	}()
	if l.segments[segIdx].index == index {
		for i := 0; i < segIdx; i++ {
			if err := os.Remove(l.segments[i].path); err != nil {
				return err
			}
		}
		l.segments = append(l.segments[:0], l.segments[segIdx:]...)
		l.firstIndex = index
		return nil
	}
	var keep []byte // the entries from index on, if any
	if index <= l.lastIndex {
		data, err := os.ReadFile(l.segments[segIdx].path)
		if err != nil {
			return err
		}
		pos := 0
		for i := l.segments[segIdx].index; i < index; i++ {
			size, n := binary.Uvarint(data[pos:])
			if n <= 0 || uint64(len(data)-pos-n) < size {
				return ErrCorrupt
			}
			pos += n + int(size)
		}
		keep = data[pos:]
	}
	startName := filepath.Join(l.path, SegmentName(index)+".START")
	if err := atomicfile.Write(startName, keep); err != nil {
		return fmt.Errorf("failed to create start segment: %w", err)
	}
	tail := segIdx == len(l.segments)-1
	if tail {
		if err := l.sfile.Close(); err != nil {
			return err
		}
	}
	for i := 0; i <= segIdx; i++ {
		if err := os.Remove(l.segments[i].path); err != nil {
			return err
		}
	}
	newName := filepath.Join(l.path, SegmentName(index))
	if err := os.Rename(startName, newName); err != nil {
		return err
	}
	l.segments = append(l.segments[:0], l.segments[segIdx:]...)
	l.segments[0] = segment{index: index, path: newName}
	l.firstIndex = index
	if tail {
		return l.openTail()
	}
	return nil
}

// findSegment returns the position of the segment holding index.
func (l *Log) findSegment(index uint64) int {
	i, j := 0, len(l.segments)
	for i < j {
		h := i + (j-i)/2
		if index >= l.segments[h].index {
			i = h + 1
		} else {
			j = h
		}
	}
	return i - 1
}
