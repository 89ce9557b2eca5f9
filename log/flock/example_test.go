package flock_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fastflow/fastflow/log/flock"
)

// One holder at a time: a second Lock of the same file fails, naming the
// pid of the holder, until the first is closed (or its process ends).
func ExampleLock() {
	dir, _ := os.MkdirTemp("", "flock-example-")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "lock")
	held, err := flock.Lock(path, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = flock.Lock(path, 0)
	var he *flock.HeldError
	fmt.Println(errors.As(err, &he), he.Holder == fmt.Sprint(os.Getpid()))
	held.Close()
	again, err := flock.Lock(path, 0)
	fmt.Println(err)
	again.Close()
	// Output:
	// true true
	// <nil>
}
