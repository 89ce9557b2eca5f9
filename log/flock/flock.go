// Package flock takes exclusive flock(2) locks on files that name their
// holder's pid: the log's partition writer lock and a following pipeline's
// lock. An flock belongs to the open file, so it is released when the
// file is closed or its process ends, however it ends (SIGKILL included):
// no stale lock outlives a crash.
package flock

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// HeldError is Lock's error while another open file holds the lock: of
// another process, or of this one.
type HeldError struct {
	Path   string
	Holder string // the pid the file names
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s is locked by pid %s", e.Path, e.Holder)
}

// Lock takes an exclusive lock on path, creating the file, and writes this
// process's pid in it. A lock held elsewhere is retried until timeout (0:
// tried once), then a *HeldError. Closing the returned file releases the
// lock.
func Lock(path string, timeout time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !time.Now().Before(deadline) {
			holder, _ := os.ReadFile(path)
			f.Close()
			return nil, &HeldError{Path: path, Holder: strings.TrimSpace(string(holder))}
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}
