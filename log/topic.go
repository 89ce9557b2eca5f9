package log

import (
	"errors"
	"fmt"
	"sync"
)

// Topic is a named set of partitions sharing one configuration.
type Topic struct {
	log  *Log
	name string
	dir  string
	cfg  TopicConfig

	mu    sync.Mutex
	parts []*Partition // opened on first use
}

func newTopic(l *Log, name string, cfg TopicConfig) *Topic {
	return &Topic{log: l, name: name, dir: l.topicDir(name), cfg: cfg, parts: make([]*Partition, cfg.Partitions)}
}

// Name is the topic's name.
func (t *Topic) Name() string { return t.name }

// Config is the topic's configuration, defaults filled in.
func (t *Topic) Config() TopicConfig { return t.cfg }

// Partitions is the number of partitions.
func (t *Topic) Partitions() int32 { return t.cfg.Partitions }

// Partition opens (once) and returns partition id.
func (t *Topic) Partition(id int32) (*Partition, error) {
	if id < 0 || id >= t.cfg.Partitions {
		return nil, fmt.Errorf("topic %q has no partition %d (it has %d)", t.name, id, t.cfg.Partitions)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.parts[id]; p != nil {
		return p, nil
	}
	p, err := openPartition(t, id)
	if err != nil {
		return nil, err
	}
	t.parts[id] = p
	return p, nil
}

// open returns the partitions opened so far.
func (t *Topic) open() []*Partition {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*Partition
	for _, p := range t.parts {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

func (t *Topic) close() error {
	var errs []error
	for _, p := range t.open() {
		if err := p.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
