package log

import (
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fastflow/fastflow/log/internal/wal"
)

// follow makes sure that appends to p wake its waiting readers. Appends in
// this process do so directly; for a partition this process does not
// write, the log watches the partition's directory with inotify and
// rescans the new bytes of its files.
func (p *Partition) follow() error {
	p.mu.Lock()
	writer := p.wal != nil
	p.mu.Unlock()
	if writer {
		return nil
	}
	if err := p.topic.log.watch(p); err != nil {
		return err
	}
	// Appends between our last scan and the watch would raise no event.
	p.refresh(nil)
	return nil
}

// refresh catches up with the files as another process left them: new
// and removed segments (retention), the tail's new entries, and segments
// replaced by compaction (named in replaced). A torn or incomplete tail is
// left unindexed: its writer is still writing it, or will repair it.
func (p *Partition) refresh(replaced map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wal != nil || p.closed.Load() {
		return
	}
	st, err := p.readState()
	if err != nil {
		return
	}
	idxs, err := wal.Segments(p.dir)
	if err != nil {
		return
	}
	p.meta.Lock()
	old := make(map[uint64]*segment, len(p.segs))
	var oldTail uint64
	for _, s := range p.segs {
		old[s.walIndex] = s
		oldTail = s.walIndex
	}
	var buf []byte
	segs := make([]*segment, 0, len(idxs))
	next := st.LogStartOffset
	for _, idx := range idxs {
		s := old[idx]
		switch {
		case s == nil || replaced[wal.SegmentName(idx)]:
			s = newSegment(p.dir, idx, next)
			scanSegment(s, 0, false, -1, &buf)
		case idx == oldTail:
			scanSegment(s, s.size, false, -1, &buf)
		}
		segs = append(segs, s)
		next = s.nextOffset
	}
	p.segs = segs
	p.meta.Unlock()
	start := max(st.LogStartOffset, firstOffset(segs, st.LogStartOffset))
	p.start.Store(start)
	p.hw.Store(endOffset(segs, start))
	p.notify()
}

// watcher turns inotify events on partition directories into refreshes.
type watcher struct {
	f    *os.File
	mu   sync.Mutex
	byWD map[int32]*Partition
}

func (l *Log) watch(p *Partition) error {
	l.mu.Lock()
	if l.watcher == nil {
		fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
		if err != nil {
			l.mu.Unlock()
			return err
		}
		// A non-blocking descriptor goes through Go's poller: Read parks the
		// goroutine, Close wakes it.
		l.watcher = &watcher{f: os.NewFile(uintptr(fd), "inotify"), byWD: map[int32]*Partition{}}
		go l.watcher.run()
	}
	w := l.watcher
	l.mu.Unlock()
	wd, err := unix.InotifyAddWatch(int(w.f.Fd()), p.dir,
		unix.IN_MODIFY|unix.IN_CREATE|unix.IN_DELETE|unix.IN_MOVED_TO|unix.IN_MOVED_FROM)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.byWD[int32(wd)] = p
	w.mu.Unlock()
	return nil
}

func (w *watcher) run() {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		touched := map[*Partition]map[string]bool{}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			w.mu.Lock()
			p := w.byWD[ev.Wd]
			w.mu.Unlock()
			if p == nil {
				continue
			}
			moved := touched[p]
			if moved == nil {
				moved = map[string]bool{}
				touched[p] = moved
			}
			if ev.Mask&unix.IN_MOVED_TO != 0 {
				moved[cstring(name)] = true
			}
		}
		for p, moved := range touched {
			p.refresh(moved)
		}
	}
}

func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

func (w *watcher) close() { w.f.Close() }
