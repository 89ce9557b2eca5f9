package partition

// Sticky spreads records that have no key. Like Kafka's sticky partitioner
// (KIP-480) it keeps sending to one partition until the caller says the
// batch is complete, then moves on; unlike Kafka's it moves round-robin
// rather than at random, so a given input always lands the same way, which
// makes runs reproducible.
//
// A Sticky cannot be used from concurrent goroutines.
type Sticky struct {
	partitions int32
	current    int32
}

// NewSticky returns a Sticky over partitions partitions, starting at 0.
func NewSticky(partitions int32) *Sticky { return NewStickyAt(partitions, 0) }

// NewStickyAt returns a Sticky over partitions partitions, starting at
// start modulo partitions: a server that makes one per request starts each
// on the next partition.
func NewStickyAt(partitions int32, start uint32) *Sticky {
	return &Sticky{partitions: partitions, current: int32(start % uint32(partitions))}
}

// Partition returns the partition for the next null-key record.
func (s *Sticky) Partition() int32 { return s.current }

// BatchDone moves to the next partition. Callers call it when the batch
// for the current partition was flushed (or reached its size).
func (s *Sticky) BatchDone() {
	s.current++
	if s.current >= s.partitions {
		s.current = 0
	}
}
