package log

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fastflow/fastflow/log/atomicfile"
)

// Log is a data directory: its topics and their partitions.
//
// Several processes may open the same directory: each partition has one
// writer process at a time (the first to Append to it takes its lock
// file), and the others read it. A Log is safe for concurrent use.
type Log struct {
	dir  string
	opts Options

	mu      sync.Mutex
	topics  map[string]*Topic
	closed  bool
	watcher *watcher
	stop    chan struct{}
	done    chan struct{}
}

// Open opens the data directory dir, creating it if needed.
func Open(dir string, opts Options) (*Log, error) {
	l := &Log{dir: dir, opts: opts.withDefaults(), topics: map[string]*Topic{}}
	if err := os.MkdirAll(filepath.Join(dir, "topics"), 0o755); err != nil {
		return nil, fmt.Errorf("open data directory: %w", err)
	}
	if l.opts.CleanupInterval > 0 {
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go l.cleaner()
	}
	return l, nil
}

// Dir is the data directory.
func (l *Log) Dir() string { return l.dir }

func (l *Log) topicDir(name string) string { return filepath.Join(l.dir, "topics", name) }

const topicFile = "topic.json"

// CreateTopic creates a topic; cfg's zero fields take their defaults.
func (l *Log) CreateTopic(name string, cfg TopicConfig) (*Topic, error) {
	if !ValidTopicName(name) {
		return nil, fmt.Errorf("invalid topic name %q: use 1 to 249 of a-z A-Z 0-9 . _ -", name)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("topic %q: %w", name, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	dir := l.topicDir(name)
	if _, err := os.Stat(filepath.Join(dir, topicFile)); err == nil {
		return nil, fmt.Errorf("%w: %q", ErrTopicExists, name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(topicJSON{Name: name, Config: cfg}, "", "  ")
	// The config file is what makes the topic exist: written last, atomically.
	if err := atomicfile.Write(filepath.Join(dir, topicFile), b); err != nil {
		return nil, err
	}
	t := newTopic(l, name, cfg)
	l.topics[name] = t
	return t, nil
}

type topicJSON struct {
	Name   string      `json:"name"`
	Config TopicConfig `json:"config"`
}

// Topic returns the named topic, or an error wrapping ErrUnknownTopic.
func (l *Log) Topic(name string) (*Topic, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if t := l.topics[name]; t != nil {
		return t, nil
	}
	if !ValidTopicName(name) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	b, err := os.ReadFile(filepath.Join(l.topicDir(name), topicFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	if err != nil {
		return nil, err
	}
	var tj topicJSON
	if err := json.Unmarshal(b, &tj); err != nil {
		return nil, fmt.Errorf("topic %q: %s: %w", name, topicFile, err)
	}
	t := newTopic(l, name, tj.Config.WithDefaults())
	l.topics[name] = t
	return t, nil
}

// Topics lists the topics' names in order.
func (l *Log) Topics() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(l.dir, "topics"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(l.topicDir(e.Name()), topicFile)); err == nil {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// DeleteTopic deletes a topic and its data.
func (l *Log) DeleteTopic(name string) error {
	t, err := l.Topic(name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	delete(l.topics, name)
	l.mu.Unlock()
	t.close()
	// Renaming first makes the deletion atomic for other processes.
	trash := filepath.Join(l.dir, "trash")
	if err := os.MkdirAll(trash, 0o755); err != nil {
		return err
	}
	gone := filepath.Join(trash, fmt.Sprintf("%s.%d", name, time.Now().UnixNano()))
	if err := os.Rename(l.topicDir(name), gone); err != nil {
		return err
	}
	atomicfile.SyncDir(filepath.Join(l.dir, "topics"))
	return os.RemoveAll(gone)
}

// Close flushes and closes every open partition. A second call returns
// ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	topics := l.topics
	w := l.watcher
	l.mu.Unlock()
	if l.stop != nil {
		close(l.stop)
		<-l.done
	}
	var errs []error
	for _, t := range topics {
		if err := t.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if w != nil {
		w.close()
	}
	return errors.Join(errs...)
}

// IsInternal reports whether a topic is internal (its name starts with
// "__", as Kafka's __consumer_offsets): listed only on request.
func IsInternal(name string) bool { return strings.HasPrefix(name, "__") }
