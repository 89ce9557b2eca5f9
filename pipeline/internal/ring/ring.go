// Package ring is a bounded lock-free single-producer single-consumer
// queue: how batches of records and results cross between a pipeline's
// goroutines without a mutex or a channel operation per item.
//
// One goroutine pushes, one pops; that is the whole contract, and it is
// what lets each side write only its own index, publishing it with one
// atomic store. Each side also keeps a private copy of the other side's
// index and reloads it only when the ring looks full (producer) or empty
// (consumer), so in steady state the two cores do not exchange a cache
// line per item (rigtorp's SPSCQueue). The two sides' fields sit on
// separate cache lines to avoid false sharing (VictoriaMetrics'
// atomicutil, pebble's syncQueue).
//
// A side that cannot proceed may park (Wait, PushWait); the other wakes it
// through a one-slot channel, and only when it is parked, so a busy ring
// costs no channel operation at all (nats-server's ipqueue does the same).
package ring

import (
	"context"
	"sync/atomic"
)

const cacheLine = 64

// Ring is an SPSC queue of T with a power-of-two capacity.
type Ring[T any] struct {
	// Each group of fields is a full cache line away from the next, so
	// that no two share a line wherever the allocator puts the ring.
	_ [cacheLine]byte
	// The consumer's, written per pop.
	head      atomic.Uint64 // next slot to pop
	tailCache uint64        // the consumer's copy of tail
	_         [cacheLine]byte
	// The producer's, written per push.
	tail      atomic.Uint64 // next slot to push
	headCache uint64        // the producer's copy of head
	_         [cacheLine]byte
	// The parked flags, read by the other side on every push and pop and
	// written only around parking: on a line of their own, they stay in
	// both cores' caches (next to head or tail, every read of them missed).
	consParked atomic.Bool
	prodParked atomic.Bool
	_          [cacheLine]byte

	mask     uint64
	buf      []T
	consWake chan struct{}
	prodWake chan struct{}
}

// New returns a Ring holding up to size items, rounded up to a power of two.
func New[T any](size int) *Ring[T] {
	n := 1
	for n < size {
		n <<= 1
	}
	return &Ring[T]{mask: uint64(n - 1), buf: make([]T, n),
		consWake: make(chan struct{}, 1), prodWake: make(chan struct{}, 1)}
}

// Cap is the ring's capacity.
func (r *Ring[T]) Cap() int { return len(r.buf) }

// Len is the number of items queued (a snapshot).
func (r *Ring[T]) Len() int { return int(r.tail.Load() - r.head.Load()) }

// Push adds v; it returns false if the ring is full. Producer only.
func (r *Ring[T]) Push(v T) bool {
	t := r.tail.Load()
	if t-r.headCache == uint64(len(r.buf)) {
		r.headCache = r.head.Load()
		if t-r.headCache == uint64(len(r.buf)) {
			return false
		}
	}
	r.buf[t&r.mask] = v
	r.tail.Store(t + 1) // publishes the slot
	if r.consParked.Load() && r.consParked.CompareAndSwap(true, false) {
		signal(r.consWake)
	}
	return true
}

// PushWait adds v, parking while the ring is full. Producer only.
func (r *Ring[T]) PushWait(ctx context.Context, v T) error {
	for !r.Push(v) {
		r.prodParked.Store(true)
		// Re-check after announcing: a Pop that came before the flag was
		// set did not see it.
		if r.tail.Load()-r.head.Load() < uint64(len(r.buf)) {
			r.prodParked.Store(false)
			continue
		}
		select {
		case <-r.prodWake:
		case <-ctx.Done():
			r.prodParked.Store(false)
			return ctx.Err()
		}
	}
	return nil
}

// Pop removes the oldest item; ok is false if the ring is empty. Consumer
// only.
func (r *Ring[T]) Pop() (v T, ok bool) {
	h := r.head.Load()
	if h == r.tailCache {
		r.tailCache = r.tail.Load()
		if h == r.tailCache {
			return v, false
		}
	}
	i := h & r.mask
	v = r.buf[i]
	var zero T
	r.buf[i] = zero // let the GC have what the slot pointed to
	r.head.Store(h + 1)
	if r.prodParked.Load() && r.prodParked.CompareAndSwap(true, false) {
		signal(r.prodWake)
	}
	return v, true
}

// Wait blocks until the ring is not empty or ctx is done. Consumer only.
func (r *Ring[T]) Wait(ctx context.Context) error {
	for {
		if r.tail.Load() != r.head.Load() {
			return nil
		}
		r.consParked.Store(true)
		if r.tail.Load() != r.head.Load() {
			r.consParked.Store(false)
			return nil
		}
		select {
		case <-r.consWake:
		case <-ctx.Done():
			r.consParked.Store(false)
			return ctx.Err()
		}
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
