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
	partitions int32

	// cfg is replaced whole when the configuration changes (AlterConfig
	// here, or reloadConfig seeing another process's change); readers load
	// it once per use.
	cfg      atomic.Pointer[TopicConfig]
	cfgStamp fileStamp // topic.json as last read or written

	mu    sync.Mutex
	parts []*Partition // opened on first use
}

func newTopic(l *Log, name, id string, cfg TopicConfig, stamp fileStamp) *Topic {
	t := &Topic{log: l, name: name, id: id, dir: l.topicDir(name), partitions: cfg.Partitions,
		cfgStamp: stamp, parts: make([]*Partition, cfg.Partitions)}
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

// Partitions is the number of partitions.
func (t *Topic) Partitions() int32 { return t.partitions }

// AlterConfig changes the topic's configuration, Kafka's AlterConfigs:
// change edits a copy of the current one, which must stay valid and keep
// the number of partitions; a change refused, by change or by these rules,
// is a *ConfigError. The new configuration is written to the topic's
// config file (atomically) before it applies. In this process it applies
// at once: retention, retention_bytes, cleanup and delete_retention at the
// next cleanup pass, max_record_bytes and timestamp_type at the next
// append, segment_bytes when a writer next opens a partition. Other
// processes using the data directory take it up at their next cleanup pass
// (Log.Cleanup).
func (t *Topic) AlterConfig(change func(*TopicConfig) error) (TopicConfig, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cfg, err := t.changedLocked(change)
	if err != nil {
		return TopicConfig{}, err
	}
	// Not over a topic of the name that another process created since:
	// its config file would get this one's ID and configuration.
	if err := t.Check(); err != nil {
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
	if cfg.Partitions != t.partitions {
		return TopicConfig{}, &ConfigError{Topic: t.name, Err: fmt.Errorf("the number of partitions is fixed at creation (%d)", t.partitions)}
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

// reloadConfig takes up a configuration another process wrote to the
// topic's config file since this one last read it.
func (t *Topic) reloadConfig() error {
	t.mu.Lock()
	defer t.mu.Unlock()
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
	if cfg.Partitions != t.partitions {
		return fmt.Errorf("topic %q: %s has %d partitions, the topic %d", t.name, path, cfg.Partitions, t.partitions)
	}
	t.cfg.Store(&cfg)
	t.cfgStamp = stamp
	return nil
}

// Partition opens (once) and returns partition id.
func (t *Topic) Partition(id int32) (*Partition, error) {
	if id < 0 || id >= t.partitions {
		return nil, fmt.Errorf("topic %q has no partition %d (it has %d)", t.name, id, t.partitions)
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
