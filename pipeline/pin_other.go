//go:build !linux

package pipeline

import "runtime"

func pin(n int) bool {
	runtime.LockOSThread()
	return false
}
