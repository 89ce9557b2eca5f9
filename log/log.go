package log

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fastflow/fastflow/log/atomicfile"
	"github.com/fastflow/fastflow/log/flock"
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
	l.emptyTrash()
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
	// The config file is what makes the topic exist: written last, atomically.
	id := newTopicID()
	stamp, err := writeTopicFile(dir, name, id, cfg)
	if err != nil {
		return nil, err
	}
	t := newTopic(l, name, id, cfg, stamp)
	l.topics[name] = t
	return t, nil
}

type topicJSON struct {
	Name   string      `json:"name"`
	ID     string      `json:"id,omitempty"`
	Config TopicConfig `json:"config"`
}

// newTopicID returns a new topic's ID: 16 random bytes, written as Kafka
// writes a topic ID (KIP-516), in unpadded URL-safe base64.
func newTopicID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// writeTopicFile writes a topic's config file atomically and returns its
// stamp.
func writeTopicFile(dir, name, id string, cfg TopicConfig) (fileStamp, error) {
	b, _ := json.MarshalIndent(topicJSON{Name: name, ID: id, Config: cfg}, "", "  ")
	path := filepath.Join(dir, topicFile)
	if err := atomicfile.Write(path, b); err != nil {
		return fileStamp{}, err
	}
	return statFile(path)
}

// readTopicFile reads a topic's config file and ID; an error wrapping
// os.ErrNotExist if there is none.
func readTopicFile(dir, name string) (TopicConfig, string, error) {
	b, err := os.ReadFile(filepath.Join(dir, topicFile))
	if err != nil {
		return TopicConfig{}, "", err
	}
	var tj topicJSON
	if err := json.Unmarshal(b, &tj); err != nil {
		return TopicConfig{}, "", fmt.Errorf("topic %q: %s: %w", name, topicFile, err)
	}
	return tj.Config.WithDefaults(), tj.ID, nil
}

// fileStamp tells whether a file was replaced since it was last read.
type fileStamp struct {
	mtime time.Time
	size  int64
	ino   uint64
}

func statFile(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{mtime: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
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
	dir := l.topicDir(name)
	stamp, err := statFile(filepath.Join(dir, topicFile))
	if err == nil {
		var cfg TopicConfig
		var id string
		if cfg, id, err = readTopicFile(dir, name); err == nil {
			t := newTopic(l, name, id, cfg, stamp)
			l.topics[name] = t
			return t, nil
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	return nil, err
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

// DeleteTopic deletes a topic and its data, and the consumer groups'
// committed offsets on it, as Kafka does. It refuses (ErrLocked, naming
// the process) while another process writes one of the topic's partitions:
// that process would go on acknowledging appends to files no longer in
// the log. A process that only reads it sees the topic end, and an
// Append of its gets ErrUnknownTopic.
func (l *Log) DeleteTopic(name string) error {
	t, err := l.Topic(name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	delete(l.topics, name)
	l.mu.Unlock()
	t.close() // this process's writer locks go, so that they can be taken below
	// The partitions' writer locks are held through the rename: no other
	// process starts writing under it.
	for id := range t.Partitions() {
		f, err := flock.Lock(filepath.Join(l.topicDir(name), strconv.Itoa(int(id)), "lock"), 0)
		var held *flock.HeldError
		switch {
		case errors.As(err, &held):
			return fmt.Errorf("topic %s: %w (pid %s): stop it, or delete the topic through it", name, ErrLocked, held.Holder)
		case errors.Is(err, os.ErrNotExist): // a partition never opened for writing
		case err != nil:
			return err
		default:
			defer f.Close()
		}
	}
	// Renaming first makes the deletion atomic for other processes.
	gone, err := l.moveToTrash(l.topicDir(name), "topic")
	if err != nil {
		return err
	}
	if err := os.RemoveAll(gone); err != nil {
		return err
	}
	// The groups' offsets on it go with it, as in Kafka. (One committed
	// since by a consumer of the deleted topic does not apply to a new
	// topic of the name either: CommittedOffset checks its topic ID.)
	groups, err := l.Groups()
	if err != nil {
		return err
	}
	for _, g := range groups {
		if err := os.RemoveAll(filepath.Join(l.dir, "groups", GroupDirName(g), "offsets", name)); err != nil {
			return err
		}
	}
	return nil
}

// trashSeq tells apart the names of directories this process moves to
// the trash in one nanosecond.
var trashSeq atomic.Int64

// moveToTrash renames dir, a topic's or a group's, into the data
// directory's trash, under a name of its own, and returns that path: the
// deletion is atomic for other processes, which see the whole directory or
// none of it, and a crash part way through the removal that follows
// leaves no half topic or group behind (Open empties the trash). The name
// in the trash is not the topic's or group's: one of 249 bytes, with a
// suffix, would not fit the 255 a file name may have.
func (l *Log) moveToTrash(dir, kind string) (string, error) {
	trash := filepath.Join(l.dir, "trash")
	if err := os.MkdirAll(trash, 0o755); err != nil {
		return "", err
	}
	gone := filepath.Join(trash, fmt.Sprintf("%s.%d.%d.%d", kind, time.Now().UnixNano(), os.Getpid(), trashSeq.Add(1)))
	if err := os.Rename(dir, gone); err != nil {
		return "", err
	}
	return gone, atomicfile.SyncDir(filepath.Dir(dir))
}

// emptyTrash removes what deletions a crash interrupted left in the
// trash. (A deletion under way in another process removes the same
// directory; os.RemoveAll takes what is already gone as removed.) What it
// cannot remove is a warning: it is no topic or group, and it does not
// keep the log from opening.
func (l *Log) emptyTrash() {
	ents, err := os.ReadDir(filepath.Join(l.dir, "trash"))
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		l.opts.Logger.Warn("cannot empty the trash", "err", err)
		return
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(l.dir, "trash", e.Name())); err != nil {
			l.opts.Logger.Warn("cannot empty the trash", "err", err)
		}
	}
}

// forget drops t from the open topics if it is still there: another
// process deleted it.
func (l *Log) forget(t *Topic) {
	l.mu.Lock()
	if l.topics[t.name] == t {
		delete(l.topics, t.name)
	}
	l.mu.Unlock()
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
		// A last pass: a process that writes for less than a
		// CleanupInterval (fastflow produce, a short-lived program) would
		// otherwise never apply retention and compaction to what it wrote.
		l.Cleanup()
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
