package log

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastflow/fastflow/log/flock"
)

// lockFile takes the writer lock at path (package flock), waiting up to
// timeout for another process that holds it; ErrLocked, naming the
// holder, after that.
func lockFile(path string, timeout time.Duration) (*os.File, error) {
	f, err := flock.Lock(path, timeout)
	var held *flock.HeldError
	if errors.As(err, &held) {
		return nil, fmt.Errorf("%w (pid %s) for more than %v", ErrLocked, held.Holder, timeout)
	}
	return f, err
}

// tryLock takes an exclusive flock on f without waiting.
func tryLock(f *os.File) bool {
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

func syncPath(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// uvarint decodes a uvarint, returning 0 bytes read if b is too short.
func uvarint(b []byte) (uint64, int) {
	var x uint64
	var s uint
	for i, c := range b {
		if i == 10 {
			return 0, -1
		}
		if c < 0x80 {
			return x | uint64(c)<<s, i + 1
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}
