package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// Topic is a named set of partitions sharing one configuration.
type Topic struct {
	log        *Log
	name       string
	id         string // "" for a topic created before topics had IDs
	dir        string
	partitions atomic.Int32 // grows (AddPartitions), never shrinks

	// cfg is replaced whole when the configuration changes (AlterConfig
	// here, or Reload seeing another process's change); readers load
	// it once per use.
	cfg      atomic.Pointer[TopicConfig]
	cfgStamp fileStamp // topic.json as last read or written

	mu    sync.Mutex
	parts []*Partition // opened on first use
}

func newTopic(l *Log, name, id string, cfg TopicConfig, stamp fileStamp) *Topic {
	t := &Topic{log: l, name: name, id: id, dir: l.topicDir(name),
		cfgStamp: stamp, parts: make([]*Partition, cfg.Partitions)}
	t.partitions.Store(cfg.Partitions)
	t.cfg.Store(&cfg)
	return t
}

// Name is the topic's name.
func (t *Topic) Name() string { return t.name }

// ID tells this topic from another of the same name, deleted or created
// since, as Kafka's topic IDs (KIP-516) do: what a consumer saved about
// the topic (a pipeline's checkpoint) no longer applies to a topic of
// another ID. Random, set at creation; "" for a topic created before
// fastflow gave topics IDs.
func (t *Topic) ID() string { return t.id }

// Config is the topic's configuration, defaults filled in.
func (t *Topic) Config() TopicConfig { return *t.cfg.Load() }

// config is the current configuration, not to be modified.
func (t *Topic) config() *TopicConfig { return t.cfg.Load() }

// Partitions is the number of partitions. It only grows: by AddPartitions
// here, or by another process's, taken up at this one's next Reload (its
// cleanup pass, a consumer's check every second, a Kafka Metadata
// request, an HTTP ingest).
func (t *Topic) Partitions() int32 { return t.partitions.Load() }

// AddPartitions grows the topic to total partitions, Kafka's
// CreatePartitions (kafka-topics --alter --partitions): the new ones are
// empty, and keys hash over the new count from then on, so a key's
// records after it may land elsewhere than before it, as in Kafka. A
// total not above the current count is a *ConfigError: partitions cannot
// be removed.
func (t *Topic) AddPartitions(total int32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.refreshGoneLocked(); err != nil {
		return err
	}
	cfg := *t.config()
	if n := t.partitions.Load(); total <= n {
		return &ConfigError{Topic: t.name, Err: fmt.Errorf("partitions can only be added: the topic has %d, not fewer than %d", n, total)}
	}
	cfg.Partitions = total
	if err := cfg.Validate(); err != nil {
		return &ConfigError{Topic: t.name, Err: err}
	}
	stamp, err := writeTopicFile(t.dir, t.name, t.id, cfg)
	if err != nil {
		return err
	}
	t.growLocked(total)
	t.cfg.Store(&cfg)
	t.cfgStamp = stamp
	return nil
}

// growLocked takes up a larger partition count.
func (t *Topic) growLocked(n int32) {
	for int32(len(t.parts)) < n {
		t.parts = append(t.parts, nil)
	}
	t.partitions.Store(n)
}

// AlterConfig changes the topic's configuration, Kafka's AlterConfigs:
// change edits a copy of the current one, which must stay valid and keep
// the number of partitions; a change refused, by change or by these rules,
// is a *ConfigError. The new configuration is written to the topic's
// config file (atomically) before it applies. In this process it applies
// at once: retention, retention_bytes, cleanup and delete_retention at the
// next cleanup pass, max_record_bytes and timestamp_type at the next
// append, segment_bytes when a writer next opens a partition. Other
// processes using the data directory take it up at their next Reload (the
// cleanup pass, Log.Cleanup, does one).
func (t *Topic) AlterConfig(change func(*TopicConfig) error) (TopicConfig, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Up to date first: not over a topic of the name that another process
	// created since (its config file would get this one's ID and
	// configuration), nor with fewer partitions than another process
	// added.
	if err := t.refreshGoneLocked(); err != nil {
		return TopicConfig{}, err
	}
	cfg, err := t.changedLocked(change)
	if err != nil {
		return TopicConfig{}, err
	}
	stamp, err := writeTopicFile(t.dir, t.name, t.id, cfg)
	if err != nil {
		return TopicConfig{}, err
	}
	t.cfg.Store(&cfg)
	t.cfgStamp = stamp
	return cfg, nil
}

// CheckConfig returns the configuration AlterConfig(change) would give,
// or its *ConfigError, and changes nothing (Kafka's validate_only).
func (t *Topic) CheckConfig(change func(*TopicConfig) error) (TopicConfig, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changedLocked(change)
}

func (t *Topic) changedLocked(change func(*TopicConfig) error) (TopicConfig, error) {
	cfg := *t.config()
	if err := change(&cfg); err != nil {
		return TopicConfig{}, &ConfigError{Topic: t.name, Err: err}
	}
	cfg = cfg.WithDefaults()
	if n := t.partitions.Load(); cfg.Partitions != n {
		return TopicConfig{}, &ConfigError{Topic: t.name, Err: fmt.Errorf("the number of partitions (%d) changes only by adding partitions (AddPartitions)", n)}
	}
	if err := cfg.Validate(); err != nil {
		return TopicConfig{}, &ConfigError{Topic: t.name, Err: err}
	}
	return cfg, nil
}

// ConfigError is AlterConfig's error for a change it refuses, as against
// a failure to write the configuration.
type ConfigError struct {
	Topic string
	Err   error
}

func (e *ConfigError) Error() string { return fmt.Sprintf("topic %q: %v", e.Topic, e.Err) }
func (e *ConfigError) Unwrap() error { return e.Err }

// Check reports whether t is still the topic of its name in the data
// directory: an error wrapping ErrUnknownTopic if another process deleted
// it, or deleted it and created one of the same name (another ID). A
// process that only reads a topic (a following pipeline) learns that way
// that what it reads is gone.
func (t *Topic) Check() error {
	_, id, err := readTopicFile(t.dir, t.name)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %q was deleted", ErrUnknownTopic, t.name)
	case err != nil:
		return err
	case id != t.id:
		return fmt.Errorf("%w: %q was deleted and created again (topic id %s, now %s)", ErrUnknownTopic, t.name, t.id, id)
	}
	return nil
}

// errTopicGone: another process deleted the topic (and maybe created one
// of the same name); this Topic is the old one.
var errTopicGone = errors.New("topic deleted")

// Reload takes up what another process changed in the topic's config
// file since this one last read it: its configuration and added
// partitions. An error wrapping ErrUnknownTopic if another process deleted
// the topic (and maybe created one of the same name); the Log then
// forgets t, so that its next Topic call sees what is there now.
func (t *Topic) Reload() error {
	t.mu.Lock()
	err := t.refreshGoneLocked()
	t.mu.Unlock()
	if errors.Is(err, ErrUnknownTopic) {
		t.log.forget(t)
	}
	return err
}

// refreshGoneLocked is refreshLocked with Check's error, which names the
// topic, for a deleted one.
func (t *Topic) refreshGoneLocked() error {
	err := t.refreshLocked()
	if errors.Is(err, errTopicGone) {
		if cerr := t.Check(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("%w: %q was deleted", ErrUnknownTopic, t.name)
	}
	return err
}

// refreshLocked reads the config file if it changed since this process
// last read or wrote it; t.mu is held.
func (t *Topic) refreshLocked() error {
	path := filepath.Join(t.dir, topicFile)
	stamp, err := statFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return errTopicGone // deleted by another process
	}
	if err != nil || stamp == t.cfgStamp {
		return err
	}
	cfg, id, err := readTopicFile(t.dir, t.name)
	if err != nil {
		return err
	}
	if id != t.id {
		return errTopicGone // deleted and created again by another process
	}
	if n := t.partitions.Load(); cfg.Partitions < n {
		return fmt.Errorf("topic %q: %s has %d partitions, the topic %d", t.name, path, cfg.Partitions, n)
	}
	t.growLocked(cfg.Partitions)
	t.cfg.Store(&cfg)
	t.cfgStamp = stamp
	return nil
}

// Partition opens (once) and returns partition id.
func (t *Topic) Partition(id int32) (*Partition, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id < 0 || int(id) >= len(t.parts) {
		return nil, fmt.Errorf("topic %q has no partition %d (it has %d)", t.name, id, len(t.parts))
	}
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
