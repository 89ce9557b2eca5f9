package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"time"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/atomicfile"
	"github.com/fastflow/fastflow/log/flock"
)

// A checkpoint is the coordinator's state after a whole round: each
// partition's position (the offset after the last record the round
// processed), watermark and counters; every window not yet forgotten, with
// its aggregate and whether and how often it was emitted; the alert
// states. Rounds that workers processed beyond it are discarded; after a
// restart they are processed again, so no result is lost or emitted twice.
//
// It lives in DATA/pipelines/NAME.checkpoint, replaced atomically: the
// magic checkpointMagic, the CRC-32C of the rest (big-endian), and the
// snapshot in gob. The checksum turns a file damaged at rest into an error
// rather than state restored wrong (gob would decode many flipped bits into
// other numbers). A file without the magic is one written before the
// checksum (fastflow of 2026-12-02 and earlier): decoded as it is.

const checkpointVersion = 1

const checkpointMagic = "FFCKPT\x00\x01"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type snapshot struct {
	Version     int
	Fingerprint string
	SourceID    string // the source topic's ID (log.Topic.ID); "" if unknown
	WrittenMs   int64
	Watermark   int64
	LatePurged  int64
	// Expired is the horizon of the coordinator's expired windows;
	// HasExpired is false in checkpoints written before it was saved
	// (then it is the watermark).
	Expired    int64
	HasExpired bool
	Parts      []partSnap
	Windows    []winSnap
	Alerts     []alertSnap
	// Outputs are the ends of the local topics and Kafka sinks the
	// pipeline writes, their records on disk before the checkpoint was
	// written: a restart skips what was written after them (localSink).
	// Nil in checkpoints written before they were saved.
	Outputs []outputSnap
}

type partSnap struct {
	ID                           int32
	Next, Wm, MaxT               int64
	LastRecord                   int64 // unix ns: idle partitions stay idle
	Records, Events, LateDropped int64
	Rejected                     [numReasons]int64
	// Session pipelines: the partition's own session spans (its worker's
	// sessionEnds), so that a restarted worker ends its rounds where the
	// stopped one would have. HasSpans is false in checkpoints written
	// before they were saved.
	Spans    []spanSnap
	HasSpans bool
}

type spanSnap struct {
	Key        string
	Start, End int64
	Closed     bool
}

type winSnap struct {
	Start, End int64
	Key        string
	Session    bool
	Emitted    bool
	Dirty      bool
	Revision   int
	State      []byte
}

type alertSnap struct {
	Rule   string
	Key    string
	Firing bool
	Starts []int64
	Met    []bool
}

func checkpointPath(l *log.Log, name string) string {
	return filepath.Join(l.Dir(), "pipelines", name+checkpointSuffix)
}

// checkpointSuffix ends the name of a pipeline's checkpoint file.
const checkpointSuffix = ".checkpoint"

// ErrAlreadyRunning is wrapped by the error of a following run of a
// pipeline that another process follows on the same data directory.
var ErrAlreadyRunning = errors.New("already running")

// ErrBadCheckpoint is wrapped by the error for a checkpoint that no retry
// will read: damaged, or written for another definition of the pipeline.
var ErrBadCheckpoint = errors.New("unusable checkpoint")

// badCheckpoint is an error of ErrBadCheckpoint with its own message.
func badCheckpoint(format string, args ...any) error {
	return &checkpointError{fmt.Errorf(format, args...)}
}

type checkpointError struct{ err error }

func (e *checkpointError) Error() string   { return e.err.Error() }
func (e *checkpointError) Unwrap() []error { return []error{e.err, ErrBadCheckpoint} }

// lockCheckpoint takes DATA/pipelines/NAME.lock (package flock) for a
// following run of the pipeline: a second process following the same
// pipeline on the same data directory would overwrite its checkpoints and
// emit its results twice, so it fails at once, naming the holder.
func lockCheckpoint(l *log.Log, name string) (*os.File, error) {
	path := filepath.Join(l.Dir(), "pipelines", name+".lock")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := flock.Lock(path, 0)
	var held *flock.HeldError
	if errors.As(err, &held) {
		return nil, fmt.Errorf("%w on this data directory (pid %s holds %s)", ErrAlreadyRunning, held.Holder, path)
	}
	return f, err
}

// fingerprint identifies what a checkpoint's state means: the source, time,
// grouping, window, metrics and alerts. Sinks may change across a restart;
// these may not.
func fingerprint(c *Config) string {
	b, _ := json.Marshal(struct {
		Topic   string
		Time    *TimeConfig
		GroupBy []string
		Window  WindowConfig
		Metrics []MetricConfig
		Alerts  []AlertConfig
	}{c.Source.fingerprintName(), c.Time, c.GroupBy, c.Window, c.Metrics, c.Alerts})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// fingerprintName is the source as the fingerprint knows it: a Kafka
// topic is the same source whatever brokers reach it.
func (s *Source) fingerprintName() string {
	if s.Kafka != nil {
		return "kafka:" + s.Kafka.Topic
	}
	return s.Topic
}

// snapshot captures the coordinator's state.
func (c *coordinator) snapshot(now time.Time) *snapshot {
	s := &snapshot{Version: checkpointVersion, Fingerprint: fingerprint(c.p.cfg), SourceID: c.sourceID, WrittenMs: now.UnixMilli(),
		Watermark: c.wm, LatePurged: c.latePurged, Expired: c.expired, HasExpired: true}
	spans := map[int32][]spanSnap{}
	for key, list := range c.keySpans {
		for _, e := range list {
			for _, sp := range e.spans {
				spans[e.part] = append(spans[e.part], spanSnap{Key: c.keys.key(uint32(key)), Start: sp.start, End: sp.end, Closed: sp.closed})
			}
		}
	}
	for _, r := range c.parts {
		s.Parts = append(s.Parts, partSnap{ID: r.id, Next: r.next, Wm: r.wm, MaxT: r.maxT, LastRecord: r.lastRecord,
			Records: r.records, Events: r.events, LateDropped: r.lateDropped, Rejected: r.rejected, HasSpans: true, Spans: spans[r.id]})
	}
	add := func(ws *winState, session bool) {
		s.Windows = append(s.Windows, winSnap{Start: ws.start, End: ws.end, Key: c.keys.key(ws.key), Session: session,
			Emitted: ws.emitted, Dirty: ws.dirty, Revision: ws.revision, State: ws.st.AppendBinary(nil)})
	}
	for _, ws := range c.wins {
		add(ws, false)
	}
	for _, list := range c.sess {
		for _, ws := range list {
			add(ws, true)
		}
	}
	for rule, byKey := range c.alerts {
		for key := range byKey {
			st := &byKey[key]
			if !st.firing && len(st.history) == 0 {
				continue // a new key's
			}
			a := alertSnap{Rule: c.p.alerts[rule].name, Key: c.keys.key(uint32(key)), Firing: st.firing}
			for _, h := range st.history {
				a.Starts = append(a.Starts, h.start)
				a.Met = append(a.Met, h.met)
			}
			s.Alerts = append(s.Alerts, a)
		}
	}
	return s
}

func saveCheckpoint(l *log.Log, name string, s *snapshot) error {
	var buf bytes.Buffer
	buf.WriteString(checkpointMagic + "\x00\x00\x00\x00") // the checksum, below
	if err := gob.NewEncoder(&buf).Encode(s); err != nil {
		return err
	}
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b[len(checkpointMagic):], crc32.Checksum(b[len(checkpointMagic)+4:], castagnoli))
	path := checkpointPath(l, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(path, b); err != nil {
		return fmt.Errorf("checkpoint %s: %w", name, err)
	}
	return nil
}

// errNoCheckpoint: the pipeline starts from its source's start.
var errNoCheckpoint = errors.New("no checkpoint")

// loadCheckpoint reads pipeline c's checkpoint, which must have been
// written for the same definition and over the same source topic, of ID
// sourceID: the offsets of a topic deleted since do not apply to another
// of the same name (Kafka's topic IDs, KIP-516), and resuming from them
// would skip its first records.
func loadCheckpoint(l *log.Log, c *Config, sourceID string) (*snapshot, error) {
	path := checkpointPath(l, c.Name)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoCheckpoint
	}
	if err != nil {
		return nil, err
	}
	if m := len(checkpointMagic); len(b) >= m && string(b[:m]) == checkpointMagic {
		if len(b) < m+4 || binary.BigEndian.Uint32(b[m:]) != crc32.Checksum(b[m+4:], castagnoli) {
			return nil, badCheckpoint("checkpoint %s is damaged: its checksum does not match (delete it to start over)", path)
		}
		b = b[m+4:]
	}
	var s snapshot
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&s); err != nil {
		return nil, badCheckpoint("checkpoint %s does not decode: %w (delete it to start over)", path, err)
	}
	if s.Version != checkpointVersion {
		return nil, badCheckpoint("checkpoint %s has version %d, want %d (delete it to start over)", path, s.Version, checkpointVersion)
	}
	if s.Fingerprint != fingerprint(c) {
		return nil, badCheckpoint("checkpoint %s was written for another definition of pipeline %s (source, time, group_by, window, metrics or alerts changed); delete it to start over", path, c.Name)
	}
	if s.SourceID != "" && sourceID != "" && s.SourceID != sourceID {
		return nil, badCheckpoint("checkpoint %s was written over topic %s of id %s, deleted since (the topic is now id %s): its offsets do not apply to the new one; delete it to start over", path, c.Source.Topic, s.SourceID, sourceID)
	}
	return &s, nil
}

// expired is the coordinator's expired horizon when s was written.
func (s *snapshot) expired() int64 {
	if s.HasExpired {
		return s.Expired
	}
	return s.Watermark
}

// restore loads a snapshot into a new coordinator. part is the source
// partition the snapshot's keys come from (a Kafka source restores one
// snapshot per partition), or noPartition.
func (c *coordinator) restore(s *snapshot, part int32) error {
	// Expired windows saved were kept for workers that had not judged by
	// the horizon yet; restarted, every worker starts from it.
	c.wm, c.latePurged = s.Watermark, c.latePurged+s.LatePurged
	c.expired, c.purged = s.expired(), s.expired()
	intern := func(k string) uint32 {
		if part == noPartition {
			return c.keys.intern(k)
		}
		return c.keys.internAt(k, part)
	}
	for _, p := range s.Parts {
		c.parts[p.ID] = &partReport{id: p.ID, next: p.Next, wm: p.Wm, maxT: p.MaxT, records: p.Records,
			events: p.Events, lateDropped: p.LateDropped, rejected: p.Rejected, lastRecord: p.LastRecord}
		c.partSpansSaved = p.HasSpans
		byKey := map[uint32][]span{}
		for _, sp := range p.Spans {
			k := intern(sp.Key)
			byKey[k] = append(byKey[k], span{start: sp.Start, end: sp.End, closed: sp.Closed})
		}
		for k, spans := range byKey {
			c.setSpans(k, p.ID, spans)
		}
	}
	for _, w := range s.Windows {
		st := c.states.get()
		if _, err := st.ReadBinary(w.State, &c.states.pages); err != nil {
			return fmt.Errorf("checkpoint: window %d..%d: %w", w.Start, w.End, err)
		}
		ws := &winState{start: w.Start, end: w.End, key: intern(w.Key), st: st,
			emitted: w.Emitted, dirty: w.Dirty, revision: w.Revision}
		if w.Session {
			c.setSessions(ws.key, append(c.sessionsOf(ws.key), ws))
		} else {
			c.wins[winKey{ws.start, ws.key}] = ws
		}
	}
	for _, list := range c.sess {
		sortSessions(list)
	}
	rules := map[string]int{}
	for i, r := range c.p.alerts {
		rules[r.name] = i
	}
	for _, a := range s.Alerts {
		i, ok := rules[a.Rule]
		if !ok {
			continue
		}
		id := intern(a.Key)
		st := c.alerts.get(i, id) // another partition's snapshot may have had the key: replaced
		st.firing, st.history = a.Firing, st.history[:0]
		for j := range a.Starts {
			st.history = append(st.history, alertObs{start: a.Starts[j], met: a.Met[j]})
		}
		c.hold(id, st)
	}
	return nil
}
