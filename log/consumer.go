package log

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"
)

// Start says where a consumer starts in a partition that has no
// committed offset: Kafka's auto.offset.reset, plus an exact offset or a
// time (the first record at or after it).
type Start struct {
	Kind   StartKind
	Offset int64 // StartOffset
	TimeMs int64 // StartTime
}

// StartKind is the kind of a Start.
type StartKind int8

const (
	StartEarliest StartKind = iota // the log-start offset
	StartLatest                    // the high watermark: only new records
	StartNone                      // an error (ErrNoOffset)
	StartOffset                    // a given offset, within the partition's (Resolve)
	StartTime                      // the first record at or after a time
)

// ParseStart parses "earliest", "latest", "none", an offset, or an RFC 3339
// time.
func ParseStart(s string) (Start, error) {
	switch s {
	case "earliest", "":
		return Start{Kind: StartEarliest}, nil
	case "latest":
		return Start{Kind: StartLatest}, nil
	case "none":
		return Start{Kind: StartNone}, nil
	}
	if o, err := strconv.ParseInt(s, 10, 64); err == nil && o >= 0 {
		return Start{Kind: StartOffset, Offset: o}, nil
	}
	if t, err := ParseTime([]byte(s)); err == nil {
		return Start{Kind: StartTime, TimeMs: t.UnixMilli()}, nil
	}
	return Start{}, fmt.Errorf("invalid start %q: want earliest, latest, none, an offset or an RFC 3339 time", s)
}

// ParseTime parses an RFC 3339 time as fastflow reads one everywhere —
// pipelines' event times, produce's --timestamp-field, start times: a 'T',
// 't' or space between date and time, 'Z' or 'z' for UTC, as RFC 3339
// section 5.6 allows (time.RFC3339 takes only 'T' and 'Z').
func ParseTime(b []byte) (time.Time, error) {
	s := append([]byte(nil), b...)
	if len(s) > 10 && (s[10] == 't' || s[10] == ' ') {
		s[10] = 'T'
	}
	if n := len(s); n > 0 && s[n-1] == 'z' {
		s[n-1] = 'Z'
	}
	return time.Parse(time.RFC3339Nano, string(s))
}

// Resolve returns the offset s designates in p. An offset before p's
// log start or past its high watermark is taken to the nearest of the two,
// as kafka-consumer-groups --reset-offsets --to-offset does: one offset
// applies to every partition of a topic, which keys fill unevenly, so
// start: 500 means offset 500 where there is one and the end where the
// partition is shorter, not an error.
func (s Start) Resolve(p *Partition) (int64, error) {
	switch s.Kind {
	case StartEarliest:
		return p.LogStartOffset(), nil
	case StartLatest:
		return p.HighWatermark(), nil
	case StartOffset:
		return min(max(s.Offset, p.LogStartOffset()), p.HighWatermark()), nil
	case StartTime:
		return p.OffsetForTime(s.TimeMs)
	}
	return 0, fmt.Errorf("%w for %s/%d and start policy none", ErrNoOffset, p.topic.name, p.id)
}

// ConsumerOptions configure a Consumer.
type ConsumerOptions struct {
	// Topic to consume.
	Topic string
	// Group, if set, makes the consumer a member of that consumer group:
	// it starts from the group's committed offsets and shares the
	// partitions with the group's other members.
	Group string
	// Partitions restricts a consumer without a group to these partitions;
	// nil means all.
	Partitions []int32
	// Start is where to start a partition without a committed offset (or
	// any partition, without a group). Default earliest.
	Start Start
	// RebalanceInterval is how often a group member checks for members
	// joining or leaving. Default 250ms.
	RebalanceInterval time.Duration
}

// Consumer reads a topic's partitions, alone or as a member of a group.
// It cannot be used from concurrent goroutines. Records returned are
// valid until the next call, as with Reader.
type Consumer struct {
	l     *Log
	t     *Topic
	opts  ConsumerOptions
	group *Group
	mem   *member

	owned   map[int32]*claim
	order   []int32 // owned partitions, for round-robin reads
	next    int
	pending int // assigned partitions whose previous owner has not let go
	wake    chan struct{}
	checked time.Time
	// topicChecked is when the topic was last found still there
	// (Topic.Reload, every topicCheckInterval).
	topicChecked time.Time
	// known is the topic's partition count when the consumer started: a
	// partition added since is read from its start, whatever the start
	// policy (all it holds came after the consumer started).
	known int32
}

// topicCheckInterval is how often a Consumer checks that its topic was
// not deleted under it: reading a deleted topic looks like reading one
// that stopped growing, and a follower would wait for ever.
const topicCheckInterval = time.Second

// claim is a partition the consumer reads.
type claim struct {
	p    *Partition
	r    *Reader
	lock *os.File // the group's owner lock, nil without a group
	stop func()
	done int64 // committed position
}

// NewConsumer starts a consumer. With a group it joins the group at once.
func (l *Log) NewConsumer(opts ConsumerOptions) (*Consumer, error) {
	t, err := l.Topic(opts.Topic)
	if err != nil {
		return nil, err
	}
	if opts.RebalanceInterval <= 0 {
		opts.RebalanceInterval = 250 * time.Millisecond
	}
	c := &Consumer{l: l, t: t, opts: opts, owned: map[int32]*claim{}, wake: make(chan struct{}, 1), known: t.Partitions()}
	if opts.Group == "" {
		parts := opts.Partitions
		if parts == nil {
			for p := int32(0); p < t.Partitions(); p++ {
				parts = append(parts, p)
			}
		}
		for _, id := range parts {
			if err := c.claim(id, nil); err != nil {
				c.Close()
				return nil, err
			}
		}
		return c, nil
	}
	if c.group, err = l.Group(opts.Group); err != nil {
		return nil, err
	}
	if c.mem, err = c.group.join(MemberInfo{Topic: opts.Topic}); err != nil {
		return nil, err
	}
	// Checked once this member is announced: a Kafka client joining at
	// the same moment sees it and is refused, or is seen here.
	members, err := c.group.Members()
	if err != nil {
		c.Close()
		return nil, err
	}
	if km := kafkaMembers(members, true); len(km) > 0 {
		c.Close()
		return nil, fmt.Errorf("%w: %s has %d (e.g. client %q, through the Kafka listener of pid %d); a fastflow consumer cannot join it",
			ErrGroupProtocol, opts.Group, len(km), km[0].Kafka.ClientID, km[0].PID)
	}
	if err := c.rebalance(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// claim starts reading partition id from the committed offset or the
// start policy.
func (c *Consumer) claim(id int32, lock *os.File) error {
	p, err := c.t.Partition(id)
	if err != nil {
		return err
	}
	from, ok := int64(0), false
	if c.group != nil {
		if from, ok, err = c.group.Committed(c.t.name, id); err != nil {
			return err
		}
		if ok && p.checkRange(from) != nil {
			c.l.opts.Logger.Warn("committed offset out of range; resetting by start policy",
				"group", c.group.name, "topic", c.t.name, "partition", id, "offset", from)
			ok = false
		}
	}
	if !ok {
		start := c.opts.Start
		if id >= c.known {
			start = Start{Kind: StartEarliest}
		}
		if from, err = start.Resolve(p); err != nil {
			return err
		}
		if start.Kind == StartOffset && start.Offset < from {
			c.l.opts.Logger.Warn("start offset no longer in the log (retention or DeleteRecords removed it); starting at the log start",
				"topic", c.t.name, "partition", id, "offset", start.Offset, "log_start", from)
		}
	}
	r, err := p.NewReader(from)
	if err != nil {
		return err
	}
	stop, err := p.Listen(c.wake)
	if err != nil {
		return err
	}
	done := from
	if !ok {
		done = -1 // nothing committed yet: the next Commit writes the position
	}
	c.owned[id] = &claim{p: p, r: r, lock: lock, stop: stop, done: done}
	c.reorder()
	return nil
}

func (c *Consumer) reorder() {
	c.order = c.order[:0]
	for id := range c.owned {
		c.order = append(c.order, id)
	}
	sort.Slice(c.order, func(i, j int) bool { return c.order[i] < c.order[j] })
	c.next = 0
}

// release stops reading a partition, committing its position first.
func (c *Consumer) release(id int32) error {
	cl := c.owned[id]
	var err error
	if c.group != nil && cl.r.Offset() != cl.done {
		err = c.group.Commit(c.t.name, id, cl.r.Offset())
	}
	cl.stop()
	cl.r.Close()
	if cl.lock != nil {
		cl.lock.Close()
	}
	delete(c.owned, id)
	c.reorder()
	return err
}

// rebalance brings the owned partitions in line with the group's current
// members.
func (c *Consumer) rebalance() error {
	c.checked = time.Now()
	members, err := c.group.Members()
	if err != nil {
		return err
	}
	want := map[int32]bool{}
	for p := int32(0); p < c.t.Partitions(); p++ {
		if Owner(c.t.name, p, members) == c.mem.info.ID {
			want[p] = true
		}
	}
	for id := range c.owned {
		if !want[id] {
			if err := c.release(id); err != nil {
				return err
			}
		}
	}
	c.pending = 0
	for id := range want {
		if c.owned[id] != nil {
			continue
		}
		lock, err := c.group.ownerLock(c.t.name, id, c.mem.info.ID)
		if err != nil {
			return err
		}
		if lock == nil {
			c.pending++ // its previous owner releases it at its next check
			continue
		}
		if err := c.claim(id, lock); err != nil {
			lock.Close()
			return err
		}
	}
	return nil
}

// Assigned lists the partitions the consumer reads now.
func (c *Consumer) Assigned() []int32 { return append([]int32(nil), c.order...) }

// Read appends to dst the records available now, from one partition at a
// time in turn, without waiting. Once another process has deleted the
// topic (checked every second) it returns an error wrapping
// ErrUnknownTopic.
func (c *Consumer) Read(dst []Record) ([]Record, error) {
	if time.Since(c.topicChecked) >= topicCheckInterval {
		c.topicChecked = time.Now()
		if err := c.t.Reload(); errors.Is(err, ErrUnknownTopic) {
			return dst, err
		}
		// Partitions added since: a group's next rebalance spreads them;
		// a consumer of the whole topic takes them.
		if c.group == nil && c.opts.Partitions == nil {
			for id := int32(len(c.order)); id < c.t.Partitions(); id++ {
				if err := c.claim(id, nil); err != nil {
					return dst, err
				}
			}
		}
	}
	if c.group != nil && time.Since(c.checked) >= c.opts.RebalanceInterval {
		if err := c.rebalance(); err != nil {
			return dst, err
		}
	}
	for range c.order {
		id := c.order[c.next]
		c.next = (c.next + 1) % len(c.order)
		cl := c.owned[id]
		n := len(dst)
		out, err := cl.r.Read(dst)
		if errors.Is(err, ErrOffsetOutOfRange) {
			// Retention passed the position: Kafka's auto.offset.reset.
			to, rerr := c.opts.Start.Resolve(cl.p)
			if rerr != nil {
				return dst, err
			}
			c.l.opts.Logger.Warn("position out of range; resetting by start policy",
				"topic", c.t.name, "partition", id, "offset", cl.r.Offset(), "to", to)
			if err := cl.r.SeekOffset(max(to, cl.p.LogStartOffset())); err != nil {
				return dst, err
			}
			continue
		}
		if err != nil {
			return out, err
		}
		if len(out) > n {
			return out, nil
		}
	}
	return dst, nil
}

// AtEnd reports whether every partition the consumer should read is
// owned and read up to its high watermark.
func (c *Consumer) AtEnd() bool {
	if c.pending > 0 {
		return false
	}
	for _, cl := range c.owned {
		if cl.r.Offset() < cl.p.HighWatermark() {
			return false
		}
	}
	return true
}

// Wait blocks until a partition may have new records, the group may need
// to rebalance, or ctx is done.
func (c *Consumer) Wait(ctx context.Context) error {
	if !c.AtEnd() && c.pending == 0 {
		return nil
	}
	every := topicCheckInterval
	if c.group != nil {
		every = min(every, c.opts.RebalanceInterval)
	}
	t := time.NewTimer(every)
	defer t.Stop()
	tick := t.C
	select {
	case <-c.wake:
	case <-tick:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// Poll waits for records and returns them (see Read and Wait).
func (c *Consumer) Poll(ctx context.Context, dst []Record) ([]Record, error) {
	for {
		n := len(dst)
		out, err := c.Read(dst)
		if err != nil || len(out) > n {
			return out, err
		}
		if err := c.Wait(ctx); err != nil {
			return dst, err
		}
	}
}

// Position returns the next offset the consumer reads in a partition it
// owns.
func (c *Consumer) Position(id int32) (int64, bool) {
	cl := c.owned[id]
	if cl == nil {
		return 0, false
	}
	return cl.r.Offset(), true
}

// Commit records, for the group, the position after every record returned
// so far. Without a group it does nothing.
func (c *Consumer) Commit() error {
	if c.group == nil {
		return nil
	}
	for id, cl := range c.owned {
		if o := cl.r.Offset(); o != cl.done {
			if err := c.group.Commit(c.t.name, id, o); err != nil {
				return err
			}
			cl.done = o
		}
	}
	return nil
}

// Close stops the consumer and leaves its group, without committing
// (call Commit first).
func (c *Consumer) Close() error {
	for id, cl := range c.owned {
		cl.stop()
		cl.r.Close()
		if cl.lock != nil {
			cl.lock.Close()
		}
		delete(c.owned, id)
	}
	c.order = nil
	if c.mem != nil {
		c.mem.leave()
		c.mem = nil
	}
	return nil
}
