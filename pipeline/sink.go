package pipeline

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/producer"
)

// Result is a window result or an alert transition as sinks and
// observers see it: the JSON line and what it is about.
type Result struct {
	Pipeline string
	Line     []byte // one JSON object, no newline; valid during the call
	Alert    bool
	Key      string // encoded group key
	StartMs  int64
	EndMs    int64
	Revision int
	Firing   bool // alerts
}

// Observer receives every result of a pipeline as it is emitted, from the
// coordinator's goroutine: it must not block (copy what it keeps). The
// server uses it for its query API, stream and metrics.
type Observer func(r *Result)

// emitter sends results to a pipeline's sinks.
type emitter struct {
	p      *plan
	stdout io.Writer // nil without a stdout sink
	out    io.Writer // the run's stdout, for the stats line whatever the sinks
	buf    []byte    // whole lines for stdout, written once per round, so that
	// pipelines sharing stdout never interleave within a line
	topics []*localSink
	kafkas []*kafkaSink
	kafkaN int // records added to the Kafka sinks since their last flush
	hooks  []*webhook
	dlq    *localSink
	late   *localSink
	locals []*localSink // topics, dlq and late: every local topic the pipeline writes
	// catchUp is, while a sink replays after a restart, each source
	// partition's end when the restart began: once the run has read that
	// far it has computed again all that the killed run could have
	// written, and the replays retire (localSink).
	catchUp map[int32]int64
	// bySource: the source is a Kafka cluster's topic, whose partitions
	// move between instances; the records written to local topics and
	// Kafka sinks tell their source partition (localSink).
	bySource bool
	// foreign are, by source partition, the outputs a restored checkpoint
	// recorded for local topics of other data directories (the
	// partition's owners before): each partition's checkpoints carry them
	// until the run has read the source to catchUp, so that if such a
	// directory takes the partition back from one of them, it finds where
	// its own topics stood and what they hold after that (localSink).
	foreign map[int32][]outputSnap
	observe Observer
	res     Result
}

func newEmitter(l *log.Log, p *plan, stdout io.Writer, observe Observer, logger *slog.Logger) (*emitter, error) {
	e := &emitter{p: p, observe: observe, out: stdout, bySource: p.cfg.Source.Kafka != nil}
	open := func(name string) (*localSink, error) {
		t, err := l.Topic(name)
		if errors.Is(err, log.ErrUnknownTopic) {
			t, err = l.CreateTopic(name, log.TopicConfig{Partitions: 1})
			if errors.Is(err, log.ErrTopicExists) {
				t, err = l.Topic(name)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("topic %s: %w", name, err)
		}
		pr, err := producer.New(t, producer.Options{Acks: log.AcksLeader, Partition: -1})
		if err != nil {
			return nil, err
		}
		ls := &localSink{t: t, pr: pr}
		e.locals = append(e.locals, ls)
		return ls, nil
	}
	for _, s := range p.cfg.Sinks {
		switch s.Type {
		case "stdout":
			e.stdout = stdout
		case "topic":
			ls, err := open(s.Topic)
			if err != nil {
				return nil, err
			}
			e.topics = append(e.topics, ls)
		case "webhook":
			e.hooks = append(e.hooks, newWebhook(p, s, logger))
		case "kafka":
			ks, err := newKafkaSink(s)
			if err != nil {
				e.close()
				return nil, err
			}
			e.kafkas = append(e.kafkas, ks)
		}
	}
	var err error
	if p.cfg.DLQ {
		if e.dlq, err = open(p.cfg.Name + ".dlq"); err != nil {
			return nil, err
		}
	}
	if p.cfg.LateTopic {
		if e.late, err = open(p.cfg.Name + ".late"); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// window emits a window's line; src is the source partition of its key's
// events, when the emitter is bySource.
func (e *emitter) window(line []byte, w *windowLine, src int32) error {
	e.res = Result{Pipeline: e.p.cfg.Name, Line: line, Key: w.key, StartMs: w.start, EndMs: w.end, Revision: w.revision}
	return e.send(line, w.key, src, w.end)
}

func (e *emitter) alert(line []byte, a *alertEvent, src int32) error {
	e.res = Result{Pipeline: e.p.cfg.Name, Line: line, Alert: true, Key: a.key, StartMs: a.start, EndMs: a.end, Firing: a.firing}
	for _, h := range e.hooks {
		h.enqueue(line, a)
	}
	return e.send(line, a.key, src, a.end)
}

func (e *emitter) send(line []byte, key string, src int32, tsMs int64) error {
	if e.stdout != nil {
		e.buf = append(append(e.buf, line...), '\n')
		if len(e.buf) >= 1<<20 {
			if err := e.flushStdout(); err != nil {
				return err
			}
		}
	}
	if len(e.topics)+len(e.kafkas) > 0 {
		k := appendKey(nil, e.p.cfg.GroupBy, key)
		for _, t := range e.topics {
			if err := t.add(k, line, src, tsMs); err != nil {
				return err
			}
		}
		for _, ks := range e.kafkas {
			ks.add(k, line, src, tsMs)
			e.kafkaN++
		}
	}
	if e.observe != nil {
		e.observe(&e.res)
	}
	return nil
}

// side appends a dead-letter or late copy.
func (e *emitter) side(sr *sideRecord) {
	s := e.dlq
	if sr.late {
		s = e.late
	}
	if s != nil {
		src := int32(noPartition)
		if e.bySource {
			src = sr.part
		}
		if err := s.add(sr.key, sr.value, src, 0); err != nil {
			e.p.logger().Error("copy to side topic failed", "pipeline", e.p.cfg.Name, "err", err)
		}
	}
}

func (e *emitter) flushStdout() error {
	if e.stdout == nil || len(e.buf) == 0 {
		return nil
	}
	_, err := e.stdout.Write(e.buf)
	e.buf = e.buf[:0]
	if err != nil {
		return fmt.Errorf("stdout: %w", err)
	}
	return nil
}

// flush pushes what this round emitted out of the buffers.
func (e *emitter) flush() error {
	if err := e.flushStdout(); err != nil {
		return err
	}
	for _, s := range e.locals {
		if err := s.pr.Flush(); err != nil {
			return err
		}
	}
	if e.kafkaN > 0 {
		e.kafkaN = 0
		for _, ks := range e.kafkas {
			if err := ks.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// line writes the stats line to the run's stdout, with or without a
// stdout sink: `run --until-end` prints it whatever the sinks (SPEC), so
// a pipeline that writes only to topics or webhooks still reports what it
// did. Lines the round left for the stdout sink go first.
func (e *emitter) line(b []byte) error {
	if err := e.flushStdout(); err != nil {
		return err
	}
	if e.out == nil {
		return nil
	}
	if _, err := e.out.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("stdout: %w", err)
	}
	return nil
}

// syncLocals fsyncs the local topics the pipeline wrote (flushed by the
// round) and returns their ends, for a checkpoint: a checkpoint must not
// outlive, in a power loss, the results of the rounds it covers, or the
// restart would not compute them again.
func (e *emitter) syncLocals() ([]outputSnap, error) {
	var outs []outputSnap
	for _, s := range e.locals {
		o, err := s.ends()
		if err != nil {
			return nil, err
		}
		outs = append(outs, o)
	}
	return outs, nil
}

// outputs is syncLocals with the Kafka sinks' ends (acknowledged by the
// round's flush) added: what a checkpoint records for a restart to skip.
func (e *emitter) outputs() ([]outputSnap, error) {
	outs, err := e.syncLocals()
	if err != nil {
		return nil, err
	}
	for _, ks := range e.kafkas {
		o, err := ks.ends()
		if err != nil {
			// The checkpoint goes on without them: a restart from it
			// writes again what this sink got after it (at least once).
			e.p.logger().Warn("kafka sink: no end offsets for the checkpoint; a restart from it may produce its results again",
				"pipeline", e.p.cfg.Name, "err", err)
			continue
		}
		outs = append(outs, o)
	}
	return outs, nil
}

// resumable is a sink whose writes after a checkpoint a restart skips:
// localSink, kafkaSink.
type resumable interface {
	outputName() string     // its name in a checkpoint's outputs
	owns(o outputSnap) bool // o is about this sink
	// replayAfter is what the sink holds after the checkpoints' ends, and
	// their unmet records.
	replayAfter(c sinceCheckpoints, budget *int) (*replay, error)
	start(r *replay)
	unmet() int // records of its replay not met yet
	retire()
}

func (e *emitter) resumables() []resumable {
	var rs []resumable
	for _, s := range e.locals {
		rs = append(rs, s)
	}
	for _, ks := range e.kafkas {
		rs = append(rs, ks)
	}
	return rs
}

// sourceOutputs are the outputs a checkpoint recorded, of the whole
// source (src noPartition) or of one of a Kafka source's partitions.
type sourceOutputs struct {
	src  int32
	outs []outputSnap
}

// resume has the local topics and Kafka sinks skip what a stopped run
// wrote after the checkpoints it resumes from (localSink), until the run
// has read the source to catchUp. Replays going on are let go first:
// the checkpoints carry what they had not met.
func (e *emitter) resume(from []sourceOutputs, catchUp map[int32]int64) error {
	e.retire()
	rs := e.resumables()
	for _, so := range from {
		if so.src == noPartition {
			continue
		}
		for _, o := range so.outs {
			if !slices.ContainsFunc(rs, func(r resumable) bool { return r.owns(o) }) {
				if e.foreign == nil {
					e.foreign = map[int32][]outputSnap{}
				}
				e.foreign[so.src] = append(e.foreign[so.src], o)
				e.catchUp = catchUp
			}
		}
	}
	for _, r := range rs {
		c := sinceCheckpoints{}
		for _, so := range from {
			for _, o := range so.outs {
				if r.owns(o) {
					c[so.src] = o
				}
			}
		}
		if len(c) == 0 {
			continue
		}
		budget := replayBudget
		rp, err := r.replayAfter(c, &budget)
		if _, kafka := r.(*kafkaSink); err != nil && kafka {
			// As a checkpoint goes on without a Kafka sink's ends (outputs),
			// the run goes on without its replay: what the stopped run
			// produced to it after the checkpoint is produced again.
			e.p.logger().Warn("kafka sink: cannot read what was produced after the checkpoint; its results since may be produced again",
				"pipeline", e.p.cfg.Name, "topic", r.outputName(), "err", err)
			continue
		}
		if err != nil {
			return err
		}
		r.start(rp)
		if n := r.unmet(); n > 0 {
			e.catchUp = catchUp
			e.p.logger().Info("records written after the checkpoint: those computed again are not written twice",
				"pipeline", e.p.cfg.Name, "topic", r.outputName(), "records", n)
		}
	}
	return nil
}

// retire lets go of the sinks' replays and of the foreign outputs.
func (e *emitter) retire() {
	for _, r := range e.resumables() {
		r.retire()
	}
	e.catchUp, e.foreign = nil, nil
}

// readTo retires the sinks' replays once the source positions have
// reached catchUp.
func (e *emitter) readTo(parts map[int32]*partReport) {
	if e.catchUp == nil {
		return
	}
	for id, end := range e.catchUp {
		if r := parts[id]; r == nil || r.next < end {
			return
		}
	}
	e.retire()
}

func (e *emitter) dropped() int64 {
	var n int64
	for _, h := range e.hooks {
		n += h.dropped.Load()
	}
	return n
}

// closeHooks delivers what the webhooks hold, or gives up on it after
// their close wait, counting it as dropped: before the stats line, so
// that the line counts what the end of the run dropped too.
func (e *emitter) closeHooks() {
	for _, h := range e.hooks {
		h.close()
	}
}

// close flushes, stops the webhooks (delivering what they still hold, for
// a moment; closeHooks) and closes the producers.
func (e *emitter) close() error {
	err := e.flush()
	e.closeHooks()
	for _, s := range e.locals {
		if cerr := s.pr.Close(); err == nil {
			err = cerr
		}
	}
	for _, ks := range e.kafkas {
		if cerr := ks.close(); err == nil {
			err = cerr
		}
	}
	return err
}
