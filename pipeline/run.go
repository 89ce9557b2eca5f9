package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/partition"
)

// Options configure Run.
type Options struct {
	// UntilEnd processes what the source holds when the run starts, then
	// moves the watermark to +infinity (emitting every open window), writes
	// the stats line and returns. Without it, Run follows the log until ctx
	// is done.
	UntilEnd bool
	// Workers is the number of worker goroutines per pipeline; default the
	// number of CPUs the process may use, at most one per partition.
	Workers int
	// NoPin leaves workers unpinned. By default each worker is locked to a
	// CPU when the workers leave at least one CPU for the rest (see
	// pinWorkers).
	NoPin bool
	// Stdout receives stdout sinks' lines and every pipeline's stats line
	// (with or without a stdout sink); default os.Stdout.
	Stdout io.Writer
	// Logger receives warnings and errors; nil discards.
	Logger *slog.Logger
	// Observe, if set, sees every result of every pipeline.
	Observe Observer
	// CheckpointInterval is how often a following pipeline checkpoints;
	// it also checkpoints when ctx ends. Default 10s; negative: only at the
	// end.
	CheckpointInterval time.Duration
	// RestartDelay, if positive, restarts a following pipeline that fails
	// (a sink it cannot write to, a full disk) from its last checkpoint,
	// after this delay, doubled for each failure in a row up to
	// MaxRestartDelay, as Flink's exponential-delay restart strategy does;
	// the other pipelines go on. A run that lasted RestartResetAfter
	// starts the delay over. Zero: a failure stops every pipeline and Wait
	// returns it (what `fastflow run` does).
	RestartDelay time.Duration
}

// The restart strategy's bounds (Options.RestartDelay).
const (
	MaxRestartDelay   = time.Minute
	RestartResetAfter = 10 * time.Minute
)

// CreateTopics creates the file's topics that do not exist yet, and gives
// those that do the settings the file declares for them (a file is the
// topics' declaration, as a Strimzi KafkaTopic is): what it changes is
// logged at info. Settings the file leaves out keep their values, so that
// what `fastflow topic alter` set stays. More partitions than the topic
// has are added (as Strimzi adds them); fewer cannot be, and are logged
// as a warning. logger may be nil.
func CreateTopics(l *log.Log, f *File, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	for _, def := range f.Topics {
		t, err := l.Topic(def.Name)
		if errors.Is(err, log.ErrUnknownTopic) {
			if _, err := l.CreateTopic(def.Name, def.Config); err != nil && !errors.Is(err, log.ErrTopicExists) {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		switch p := def.Config.Partitions; {
		case p > t.Partitions():
			logger.Info("adding partitions the file declares", "topic", def.Name, "partitions", t.Partitions(), "declared", p)
			if err := t.AddPartitions(p); err != nil {
				return fmt.Errorf("topic %s: %w", def.Name, err)
			}
		case p < t.Partitions():
			logger.Warn("topic exists with more partitions than the file declares; partitions cannot be removed",
				"topic", def.Name, "partitions", t.Partitions(), "declared", p)
		}
		cur := t.Config()
		want := declared(cur, def.Config)
		if want == cur {
			continue
		}
		if _, err := t.AlterConfig(func(c *log.TopicConfig) error { *c = declared(*c, def.Config); return nil }); err != nil {
			return fmt.Errorf("topic %s: %w", def.Name, err)
		}
		logger.Info("topic configuration changed to the file's", "topic", def.Name, "from", fmt.Sprintf("%+v", cur),
			"to", fmt.Sprintf("%+v", want))
	}
	return nil
}

// declared returns cur with the settings decl gives (its non-zero ones),
// the partitions excepted.
func declared(cur, decl log.TopicConfig) log.TopicConfig {
	set := func(dst *time.Duration, v time.Duration) {
		if v != 0 {
			*dst = v
		}
	}
	set(&cur.Retention, decl.Retention)
	set(&cur.DeleteRetention, decl.DeleteRetention)
	if decl.RetentionBytes != 0 {
		cur.RetentionBytes = decl.RetentionBytes
	}
	if decl.SegmentBytes != 0 {
		cur.SegmentBytes = decl.SegmentBytes
	}
	if decl.MaxRecordBytes != 0 {
		cur.MaxRecordBytes = decl.MaxRecordBytes
	}
	if decl.Cleanup != "" {
		cur.Cleanup = decl.Cleanup
	}
	if decl.TimestampType != "" {
		cur.TimestampType = decl.TimestampType
	}
	return cur
}

// Run creates the file's topics and runs its pipelines, each on its own
// workers, until they end (UntilEnd) or ctx is done.
func Run(ctx context.Context, l *log.Log, f *File, opts Options) error {
	r, err := Start(ctx, l, f, opts)
	if err != nil {
		return err
	}
	return r.Wait()
}

// Runner is a file's pipelines, running.
type Runner struct {
	pipes  []*Pipeline
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   []error
}

// Pipeline is one running pipeline: its configuration and its progress,
// published after every round.
type Pipeline struct {
	Config *Config
	snap   atomic.Pointer[Snapshot]
	failed atomic.Pointer[Failure]
}

// Failure is what made a pipeline restart (Options.RestartDelay).
type Failure struct {
	Restarts int64     // failures so far, each followed by a restart
	Err      error     // the latest failure
	At       time.Time // when it failed
}

// Failure returns the pipeline's latest failure and how many there were,
// or nil if it never failed.
func (p *Pipeline) Failure() *Failure { return p.failed.Load() }

// Snapshot is a pipeline's progress after a round.
type Snapshot struct {
	Stats     Stats
	Watermark int64 // unix ms; math.MinInt64 before the first event
	Positions map[int32]int64
	// HighWater is each partition's high watermark as last seen: the lag
	// is HighWater - Positions.
	HighWater   map[int32]int64
	OpenWindows int
	// Keys is the number of group keys held: those of open windows and
	// alert states, and those not yet forgotten (see keyTable).
	Keys int
	// KeysForgotten counts the keys released since the run started.
	KeysForgotten int64
}

// Snapshot returns the pipeline's latest progress (nil before its first
// round).
func (p *Pipeline) Snapshot() *Snapshot { return p.snap.Load() }

// Start creates the file's topics and starts its pipelines.
func Start(ctx context.Context, l *log.Log, f *File, opts Options) (*Runner, error) {
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := CreateTopics(l, f, opts.Logger); err != nil {
		return nil, err
	}
	// One writer for all pipelines' stdout sinks: each writes whole lines
	// in one call, so lines never interleave.
	out := &lockedWriter{w: opts.Stdout}
	ctx, cancel := context.WithCancel(ctx)
	r := &Runner{cancel: cancel, errs: make([]error, len(f.Pipelines))}
	for i, c := range f.Pipelines {
		pl := &Pipeline{Config: c}
		r.pipes = append(r.pipes, pl)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := runRestarting(ctx, l, pl, opts, out); err != nil && !stopped(err) {
				r.errs[i] = fmt.Errorf("pipeline %s: %w", c.Name, err)
				cancel()
			}
		}()
	}
	return r, nil
}

// runRestarting runs pl, and again from its last checkpoint each time a
// following run fails, if opts.RestartDelay says so; but a pipeline that
// another process already follows on the data directory, or whose
// checkpoint it cannot use, fails at once.
func runRestarting(ctx context.Context, l *log.Log, pl *Pipeline, opts Options, out io.Writer) error {
	delay := opts.RestartDelay
	for attempt := 0; ; attempt++ {
		began := time.Now()
		err := runPipeline(ctx, l, pl, opts, out)
		if err == nil || stopped(err) || opts.RestartDelay <= 0 || opts.UntilEnd {
			return err
		}
		if attempt == 0 && (errors.Is(err, ErrAlreadyRunning) || errors.Is(err, ErrBadCheckpoint)) {
			// A second instance on one data directory, a checkpoint to
			// delete: mistakes to report at start, not failures to outlast.
			return err
		}
		if time.Since(began) >= RestartResetAfter {
			delay = opts.RestartDelay
		}
		n := int64(1)
		if f := pl.failed.Load(); f != nil {
			n = f.Restarts + 1
		}
		pl.failed.Store(&Failure{Restarts: n, Err: err, At: time.Now()})
		opts.Logger.Error("pipeline failed; restarting from its last checkpoint", "pipeline", pl.Config.Name,
			"err", err, "in", delay, "restarts", n)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, MaxRestartDelay)
	}
}

// Pipelines lists the running pipelines, in file order.
func (r *Runner) Pipelines() []*Pipeline { return r.pipes }

// Stop asks every pipeline to stop (checkpointing, when following).
func (r *Runner) Stop() { r.cancel() }

// Wait waits until every pipeline has ended and returns their errors.
func (r *Runner) Wait() error {
	r.wg.Wait()
	r.cancel()
	return errors.Join(r.errs...)
}

// stopped reports whether err is the end of the run's context: a stop, not
// a failure.
func stopped(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (lw *lockedWriter) Write(b []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.Write(b)
}

// engine is one running pipeline.
type engine struct {
	l       *log.Log
	p       *plan
	pl      *Pipeline
	coord   *coordinator
	workers []*worker
	wakers  []*waker
	follow  bool
	every   time.Duration // checkpoints, following
	// saved is when the last checkpoint was written; zero before the
	// first, so that the first round writes one: a run killed within its
	// first interval resumes from there rather than from the source's start
	// (with start: latest, that would skip what was written meanwhile), and
	// its restart does not write again to the results topic what it wrote
	// (localSink).
	saved time.Time
	// source is the local source topic, checked at each periodic
	// checkpoint (log.Topic.Reload); nil for a Kafka source. sourceParts
	// is its partition count at the start, which the workers own.
	source      *log.Topic
	sourceParts int32
	// save writes a checkpoint: to the data directory, or per partition
	// to a Kafka cluster.
	save func(*coordinator, time.Time) error
	// statsOnStop prints the stats line when a following run stops (not
	// when a Kafka source's generation ends for a rebalance).
	statsOnStop bool
}

func runPipeline(ctx context.Context, l *log.Log, pl *Pipeline, opts Options, stdout io.Writer) error {
	c := pl.Config
	p, err := compile(c)
	if err != nil {
		return err
	}
	p.log = opts.Logger
	if c.Source.Kafka != nil {
		if opts.UntilEnd {
			return errors.New("--until-end is not supported with a Kafka source: it follows its consumer group")
		}
		out, err := newEmitter(l, p, stdout, opts.Observe, opts.Logger)
		if err != nil {
			return err
		}
		err = runKafka(ctx, l, pl, p, opts, out)
		if cerr := out.close(); err == nil {
			err = cerr
		}
		return err
	}
	t, err := l.Topic(c.Source.Topic)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if !opts.UntilEnd {
		lock, err := lockCheckpoint(l, c.Name)
		if err != nil {
			return err
		}
		defer lock.Close()
	}
	out, err := newEmitter(l, p, stdout, opts.Observe, opts.Logger)
	if err != nil {
		return err
	}
	e := newEngine(l, p, pl, opts, out)
	e.source, e.coord.sourceID = t, t.ID()
	e.save = func(c *coordinator, now time.Time) error {
		outs, err := out.outputs()
		if err != nil {
			return err
		}
		s := c.snapshot(now)
		s.Outputs = outs
		return saveCheckpoint(l, p.cfg.Name, s)
	}
	// Following resumes from the pipeline's checkpoint; --until-end is a
	// batch run over what the log holds, from the source's start.
	if e.follow {
		snap, err := loadCheckpoint(l, c, t.ID())
		switch {
		case errors.Is(err, errNoCheckpoint):
		case err != nil:
			out.close()
			return err
		default:
			if err := e.coord.restore(snap, noPartition); err != nil {
				out.close()
				return err
			}
			catchUp := map[int32]int64{}
			for i := range t.Partitions() {
				if part, err := t.Partition(i); err == nil {
					catchUp[i] = part.HighWatermark()
				}
			}
			if err := out.resume([]sourceOutputs{{noPartition, snap.Outputs}}, catchUp); err != nil {
				out.close()
				return err
			}
			opts.Logger.Info("resuming from checkpoint", "pipeline", c.Name, "watermark", snap.Watermark)
		}
	}
	ids := make([]int32, t.Partitions())
	e.sourceParts = int32(len(ids))
	for i := range ids {
		ids[i] = int32(i)
	}
	err = e.addWorkers(ids, opts, func(id int32, saved *partReport) (*feed, error) {
		part, err := t.Partition(id)
		if err != nil {
			return nil, err
		}
		from, err := c.Source.Start.Resolve(part)
		if err != nil {
			return nil, fmt.Errorf("source start: %w", err)
		}
		if st := c.Source.Start; saved == nil && st.Kind == log.StartOffset && st.Offset < from {
			opts.Logger.Warn("source start offset no longer in the log (retention or DeleteRecords removed it); starting at the log start",
				"pipeline", c.Name, "partition", id, "offset", st.Offset, "log_start", from)
		}
		if saved != nil {
			from = saved.next
			if from < part.LogStartOffset() || from > part.HighWatermark() {
				opts.Logger.Warn("checkpointed offset out of range; starting by the source's start",
					"pipeline", c.Name, "partition", id, "offset", from)
				if from, err = c.Source.Start.Resolve(part); err != nil {
					return nil, err
				}
			}
		}
		end := int64(-1)
		if opts.UntilEnd {
			end = part.HighWatermark()
		}
		return newFeed(part, from, end)
	})
	if err == nil {
		opts.Logger.Info("pipeline running", "pipeline", c.Name, "workers", len(e.workers), "partitions", len(ids), "follow", e.follow)
		err = e.run(ctx, opts.NoPin)
	}
	if cerr := out.close(); err == nil {
		err = cerr
	}
	return err
}

func newEngine(l *log.Log, p *plan, pl *Pipeline, opts Options, out *emitter) *engine {
	e := &engine{l: l, p: p, pl: pl, follow: !opts.UntilEnd, every: opts.CheckpointInterval, statsOnStop: true}
	if e.every == 0 {
		e.every = 10 * time.Second
	}
	e.coord = newCoordinator(p, newKeyTable(), out)
	return e
}

// addWorkers spreads partitions ids over the workers, each with a feed
// that feedFor opens (saved is the partition's restored state, if any).
func (e *engine) addWorkers(ids []int32, opts Options, feedFor func(id int32, saved *partReport) (*feed, error)) error {
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, len(ids)))
	kt := e.coord.keys
	for w, idx := range partition.Assign(int32(len(ids)), workers) {
		var feeds []*feed
		var parts []*partState
		for _, i := range idx {
			id := ids[i]
			saved := e.coord.parts[id]
			fd, err := feedFor(id, saved)
			if err != nil {
				for _, f := range e.wakers {
					f.close()
				}
				return err
			}
			feeds = append(feeds, fd)
			ps := &partState{feed: fd, sessions: sessionEnds{lateness: e.p.lateness}}
			ps.id, ps.wm, ps.maxT = id, minWatermark, minWatermark
			if saved != nil {
				ps.partReport = *saved
				e.restoreSessionEnds(ps)
			}
			ps.next = fd.fetched.Load()
			parts = append(parts, ps)
		}
		f, err := newWaker(feeds, opts.Logger)
		if err != nil {
			return err
		}
		e.wakers = append(e.wakers, f)
		wk := newWorker(e.p, kt, parts, f, e.follow)
		wk.index, wk.horizons = w, &e.coord.horizon
		e.workers = append(e.workers, wk)
	}
	e.coord.skipped = func() int64 {
		var n int64
		for _, f := range e.wakers {
			n += f.skipped.Load()
		}
		return n
	}
	for i, f := range e.wakers {
		for j, g := range e.wakers {
			if i != j {
				f.peers = append(f.peers, g.delivered)
			}
		}
	}
	return nil
}

// pinWorkers reports whether workers should be pinned, each locked to
// its own CPU: only when they leave a CPU (of procs, GOMAXPROCS) for the
// coordinator, the wakers, the sinks and the garbage collector. A locked
// worker keeps its P while it runs, so with every CPU pinned those
// goroutines get CPU time only through preemption and a hand-over between
// OS threads: measured on 2 CPUs with 2 workers, run --until-end was
// 20–30% slower pinned than not (10% with 1 CPU and 1 worker).
func pinWorkers(workers, procs int, noPin bool) bool {
	return !noPin && workers < procs
}

// run starts the wakers and workers and coordinates their rounds.
func (e *engine) run(ctx context.Context, noPin bool) error {
	e.coord.horizon.Store(e.coord.expired) // as restored: the workers' first rounds judge by it
	pinned := pinWorkers(len(e.workers), runtime.GOMAXPROCS(0), noPin)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2*len(e.workers))
	for i, w := range e.workers {
		f := e.wakers[i]
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := f.run(ctx); err != nil && !stopped(err) {
				errc <- err
				cancel()
			}
		}()
		go func() {
			defer wg.Done()
			if pinned {
				pin(i)
			}
			if err := w.run(ctx); err != nil && !stopped(err) {
				errc <- err
				cancel()
			}
		}()
	}
	err := e.coordinate(ctx)
	cancel()
	wg.Wait()
	for _, f := range e.wakers {
		f.close()
	}
	select {
	case werr := <-errc:
		return werr
	default:
	}
	return err
}

// coordinate applies the workers' rounds in order: round r of every
// worker, then the watermark and emissions; so what is emitted depends on
// the log alone, not on how partitions are spread over workers or how
// fast each runs. A worker that is done sends nil.
func (e *engine) coordinate(ctx context.Context) error {
	c := e.coord
	finished := make([]bool, len(e.workers))
	left := len(e.workers)
	msgs := make([]*roundMsg, 0, len(e.workers))
	epochs := make([]uint64, len(e.workers)) // the key epoch of each worker's latest round
	judged := make([]int64, len(e.workers))  // the purge horizon of each worker's latest round
	for i := range judged {
		judged[i] = c.expired
	}
	c.indexRestored()
	for {
		msgs = msgs[:0]
		for i, w := range e.workers {
			if finished[i] {
				continue
			}
			m, err := popWait(ctx, w)
			if err != nil {
				// Stopped: the rounds collected so far are dropped whole; the
				// state is that of the last complete round.
				return e.stop(err)
			}
			if m == nil {
				finished[i] = true
				left--
				continue
			}
			msgs = append(msgs, m)
		}
		for _, m := range msgs {
			c.apply(m)
		}
		wm, horizon := c.watermark(e.follow)
		if left == 0 && !e.follow {
			wm, horizon = math.MaxInt64, math.MaxInt64
		}
		// Drop from memory only what every worker already judges late: the
		// horizon each judged its latest round by.
		safe := int64(math.MaxInt64)
		for _, m := range msgs {
			judged[m.worker] = m.horizon
		}
		for i, h := range judged {
			if !finished[i] {
				safe = min(safe, h)
			}
		}
		if err := c.advance(wm, horizon, safe); err != nil {
			return err
		}
		c.horizon.Store(c.expired)
		seen := uint64(math.MaxUint64) // a finished worker holds no key
		for _, m := range msgs {
			epochs[m.worker] = m.keyEpoch
		}
		for i, ep := range epochs {
			if !finished[i] {
				seen = min(seen, ep)
			}
		}
		c.forgetKeys(seen)
		for _, m := range msgs {
			e.workers[m.worker].back.Push(m) // if full, the GC has it
		}
		c.out.readTo(c.parts)
		e.publish()
		if left == 0 {
			return e.printStats()
		}
		if e.follow && e.every > 0 && time.Since(e.saved) >= e.every {
			if e.source != nil {
				// A topic deleted under a follower reads as one that
				// stopped growing: say so instead of waiting forever. And
				// the workers own the partitions there were at the start:
				// partitions added since need a restart (serve's is
				// automatic) to be read.
				if err := e.source.Reload(); errors.Is(err, log.ErrUnknownTopic) {
					return fmt.Errorf("source: %w", err)
				}
				if n := e.source.Partitions(); n != e.sourceParts {
					return fmt.Errorf("source: topic %s has %d partitions, %d when the pipeline started: restart it to read them all (serve restarts it)",
						e.source.Name(), n, e.sourceParts)
				}
			}
			if err := e.checkpoint(); err != nil {
				// A periodic checkpoint only bounds what a crash would
				// replay: the run goes on and tries again at the next
				// interval (Flink restarts the job from the last checkpoint
				// that worked; nothing here needs a restart). The stop's
				// checkpoint must be written.
				e.p.log.Error("checkpoint failed; the run goes on, and a crash now would resume from the last one written",
					"pipeline", e.p.cfg.Name, "err", err, "retry_in", e.every)
			}
		}
	}
}

// publish makes the round's progress visible to Pipeline.Snapshot.
func (e *engine) publish() {
	c := e.coord
	s := &Snapshot{Stats: c.stats(), Watermark: c.wm, Positions: make(map[int32]int64, len(c.parts)),
		HighWater: make(map[int32]int64, len(c.parts)), OpenWindows: c.openWindows(),
		Keys: c.keys.size(), KeysForgotten: c.forgotten}
	for id, r := range c.parts {
		s.Positions[id] = r.next
	}
	for _, f := range e.wakers {
		for _, fd := range f.feeds {
			s.HighWater[fd.id] = fd.lagHighWater()
		}
	}
	e.pl.snap.Store(s)
}

func (e *engine) checkpoint() error {
	e.saved = time.Now()
	return e.save(e.coord, e.saved)
}

// ErrInterrupted is a run --until-end stopped (SIGINT, SIGTERM) before
// the end of what the log held: its output is incomplete, and it prints
// no stats line, so that a script does not take it for a whole run.
var ErrInterrupted = errors.New("interrupted before the end of the log: the output is incomplete")

// stop ends a following run: checkpoint, stats line, and a nil error if
// it was asked to stop. An --until-end run stopped is ErrInterrupted.
func (e *engine) stop(cause error) error {
	switch {
	case !stopped(cause):
		return cause
	case !e.follow:
		return ErrInterrupted
	}
	if err := e.checkpoint(); err != nil {
		return err
	}
	if !e.statsOnStop {
		return nil
	}
	return e.printStats()
}

// restoreSessionEnds gives a restored partition's worker the session
// spans the checkpoint saved for it. A checkpoint from before partitions'
// spans were saved has only the merged sessions: those this partition may
// have fed — its own keys' when known, else every key's.
func (e *engine) restoreSessionEnds(ps *partState) {
	c := e.coord
	if c.partSpansSaved {
		for key, list := range c.keySpans {
			for _, e := range list {
				if e.part == ps.id {
					ps.sessions.restore(uint32(key), e.spans)
				}
			}
		}
		return
	}
	for key, list := range c.sess {
		if len(list) == 0 {
			continue
		}
		if kp := c.keys.partition(uint32(key)); kp != noPartition && kp != ps.id {
			continue
		}
		for _, ws := range list {
			ps.sessions.open(uint32(key), ws.start, ws.end, minWatermark)
		}
	}
}

// printStats ends a run's output: the webhooks deliver what they still
// hold first, so that what they drop is counted, and logged beside the
// stats line.
func (e *engine) printStats() error {
	e.coord.out.closeHooks()
	s := e.coord.stats()
	e.p.warnStats(&s)
	return e.coord.out.line(e.p.appendStats(nil, &s))
}

func popWait(ctx context.Context, w *worker) (*roundMsg, error) {
	for {
		if m, ok := w.out.Pop(); ok {
			return m, nil
		}
		if err := w.out.Wait(ctx); err != nil {
			return nil, err
		}
	}
}
