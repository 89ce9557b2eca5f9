package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fastflow/fastflow/log"
)

// A Kafka source: the pipeline consumes a topic of a Kafka cluster (or of
// another fastflow's Kafka listener) as a member of a consumer group, so
// that N fastflow instances split its partitions, Kafka Streams' way of
// scaling out.
//
// Every rebalance (the group uses an eager assignor) is a generation: the
// revoke stops the running engine after its last complete round and
// writes its state, split by source partition, to a checkpoint topic in
// the cluster; the assignment reads the newly owned partitions' states
// back, merges them into one engine and starts it at the checkpointed
// offsets. A partition's open windows, sessions, alert states and
// counters thus move with it. The split needs every group key's events
// on one partition — produce with the group-by fields as the record key,
// as Kafka Streams' co-partitioning requires; keys seen on two
// partitions are counted and warned about.
//
// Offsets are committed to the group too (after the checkpoint is
// written), so that Kafka's tools show the group's lag; the checkpoint
// topic is what positions are restored from.

// kafkaRun is a pipeline with a Kafka source, running.
type kafkaRun struct {
	l    *log.Log
	p    *plan
	pl   *Pipeline
	opts Options
	out  *emitter
	src  *KafkaSource
	cl   *kgo.Client
	// instance tells this process's checkpoints from others'.
	instance string

	mu  sync.Mutex // generations start and stop under it
	cur atomic.Pointer[generation]

	ready     chan struct{} // closed once cl is set
	failed    chan struct{} // closed by fail
	failOnce  sync.Once
	err       error
	warnedSpr atomic.Bool
}

// generation is the engine over one assignment of partitions.
type generation struct {
	e      *engine
	feeds  map[int32]*feed
	ctx    context.Context
	cancel context.CancelFunc
	done   chan error
}

// kafkaIOTimeout bounds a checkpoint read or write and a commit (a
// variable: tests shorten it).
var kafkaIOTimeout = 30 * time.Second

func runKafka(ctx context.Context, l *log.Log, pl *Pipeline, p *plan, opts Options, out *emitter) error {
	src := p.cfg.Source.Kafka
	var id [6]byte
	rand.Read(id[:])
	k := &kafkaRun{l: l, p: p, pl: pl, opts: opts, out: out, src: src, instance: hex.EncodeToString(id[:]),
		failed: make(chan struct{}), ready: make(chan struct{})}
	session := src.SessionTimeout
	if session <= 0 {
		session = DefaultSessionTimeout
	}
	// The client joins the group as it is made: its callbacks wait for
	// ready, closed once k.cl is set.
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(src.Brokers...),
		kgo.ConsumerGroup(src.Group),
		kgo.SessionTimeout(session),
		kgo.HeartbeatInterval(min(3*time.Second, session/3)),
		kgo.ConsumeTopics(src.Topic),
		kgo.Balancers(kgo.RoundRobinBalancer()), // eager: a rebalance revokes everything
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsRevoked(k.revoked),
		kgo.OnPartitionsLost(k.lost),
		kgo.AdjustFetchOffsetsFn(k.assigned),
		kgo.FetchMaxWait(250*time.Millisecond),
		// Transaction markers come through, so that a partition's position
		// reaches its end even when the last offset is a marker.
		kgo.KeepControlRecords(),
		kgo.ClientID("fastflow"),
	)
	if err != nil {
		return fmt.Errorf("source kafka: %w", err)
	}
	k.cl = cl
	close(k.ready)
	ictx, cancel := context.WithTimeout(ctx, kafkaIOTimeout)
	err = ensureTopic(ictx, cl, src.CheckpointTopic, 1, map[string]string{"cleanup.policy": "compact"})
	cancel()
	if err != nil {
		cl.Close()
		return fmt.Errorf("source kafka: checkpoint topic %s: %w", src.CheckpointTopic, err)
	}
	// A source topic the cluster does not have fails the run, as a local
	// one does (and Kafka Streams' MissingSourceTopicException), rather
	// than waiting in the group for partitions that never come.
	ictx, cancel = context.WithTimeout(ctx, kafkaIOTimeout)
	err = topicExists(ictx, cl, src.Topic)
	cancel()
	if err != nil {
		cl.Close()
		return fmt.Errorf("source kafka: %w", err)
	}
	opts.Logger.Info("pipeline joining Kafka group", "pipeline", p.cfg.Name, "brokers", src.Brokers, "topic", src.Topic, "group", src.Group)

	pctx, stopPoll := context.WithCancel(ctx)
	go func() {
		select {
		case <-k.failed:
			stopPoll()
		case <-pctx.Done():
		}
	}()
	var d deliverer
	for pctx.Err() == nil {
		// Records that did not fit in their feed wait here (their partition
		// paused if too many do) until the worker hands batches back: the
		// poller never blocks on one partition while another's worker needs
		// records.
		d.drain(k)
		fctx, cancel := pctx, context.CancelFunc(func() {})
		if len(d.pending) > 0 {
			fctx, cancel = context.WithTimeout(pctx, 5*time.Millisecond)
		}
		fs := cl.PollFetches(fctx)
		cancel()
		if pctx.Err() != nil || fs.IsClientClosed() {
			break
		}
		fs.EachError(func(topic string, part int32, err error) {
			switch {
			case errors.Is(err, kerr.InvalidSessionTimeout):
				// No retry can join with it: stop, saying which key.
				k.fail(fmt.Errorf("source.kafka.session_timeout %s: the cluster refuses it (outside its group.min.session.timeout.ms and group.max.session.timeout.ms; Kafka's default minimum is 6s)", session))
			case !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
				opts.Logger.Warn("kafka fetch", "pipeline", p.cfg.Name, "topic", topic, "partition", part, "err", err)
			}
		})
		fs.EachPartition(func(fp kgo.FetchTopicPartition) { d.deliver(k, fp) })
	}
	stopPoll()
	// Shutting down: the last generation checkpoints and prints the stats
	// line; then the client leaves the group, handing the partitions over.
	err = k.stop(true, true)
	cl.Close()
	select {
	case <-k.failed: // closed after k.err is set: reading it is safe now
		return k.err
	default:
		return err
	}
}

// fail ends the run with err (an engine failed).
func (k *kafkaRun) fail(err error) {
	k.failOnce.Do(func() {
		k.err = err
		close(k.failed)
	})
}

// assigned starts a generation over the partitions the group assigned:
// their checkpoints restored, at their checkpointed offsets (or the
// group's committed ones, or the source's start).
func (k *kafkaRun) assigned(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	select {
	case <-k.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.stopLocked(true, false); err != nil {
		return nil, err
	}
	var parts []int32
	for p := range offsets[k.src.Topic] {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return offsets, nil
	}
	ictx, cancel := context.WithTimeout(ctx, kafkaIOTimeout)
	defer cancel()
	snaps, err := readCheckpoints(ictx, k.cl, k.src, k.p.cfg, parts)
	if errors.Is(err, ErrBadCheckpoint) {
		k.fail(err) // no retry can read it: stop, saying why
		return nil, err
	}
	if err != nil {
		k.opts.Logger.Error("reading checkpoints (will retry)", "pipeline", k.p.cfg.Name, "err", err)
		return nil, err
	}
	var missing []int32
	for _, p := range parts {
		if snaps[p] == nil {
			missing = append(missing, p)
		}
	}
	// Until a partition's records up to its end at assignment are
	// delivered, its worker waits for them: a partition with records but
	// no event processed yet must not let the others close windows.
	ends, err := listOffsets(ictx, k.cl, k.src.Topic, parts, -1)
	if err != nil {
		return nil, err
	}
	starts := map[int32]int64{}
	if len(missing) > 0 {
		if starts, err = startOffsets(ictx, k.cl, k.src, missing, k.p.cfg.Source.Start); err != nil {
			return nil, err
		}
	}

	// What the partitions' previous owners wrote after their checkpoints
	// is not written again; the replays of the generation before are let
	// go (its checkpoints carry what they had not met).
	var from []sourceOutputs
	catchUp := map[int32]int64{}
	for _, p := range parts {
		if s := snaps[p]; s != nil {
			from = append(from, sourceOutputs{p, s.Outputs})
			catchUp[p] = ends[p]
		}
	}
	if err := k.out.resume(from, catchUp); err != nil {
		return nil, err
	}

	e := newEngine(k.l, k.p, k.pl, k.opts, k.out)
	e.statsOnStop = false
	e.save = k.save
	wm, expired := int64(math.MaxInt64), int64(math.MaxInt64)
	for _, p := range parts {
		if s := snaps[p]; s != nil {
			if err := e.coord.restore(s, p); err != nil {
				return nil, err
			}
			wm, expired = min(wm, s.Watermark), min(expired, s.expired())
		} else {
			// A partition that comes with no state holds the watermark
			// back, as it would have in one instance from the start.
			wm, expired = minWatermark, minWatermark
		}
	}
	e.coord.wm, e.coord.expired, e.coord.purged = wm, expired, expired
	feeds := map[int32]*feed{}
	next := map[string]map[int32]kgo.Offset{k.src.Topic: {}}
	err = e.addWorkers(parts, k.opts, func(id int32, saved *partReport) (*feed, error) {
		from := starts[id]
		if saved != nil {
			from = saved.next
		}
		fd := newKafkaFeed(id, from)
		fd.hw.Store(max(from, ends[id]))
		fd.lagHW.Store(ends[id])
		feeds[id] = fd
		next[k.src.Topic][id] = kgo.NewOffset().At(from).WithEpoch(-1)
		return fd, nil
	})
	if err != nil {
		return nil, err
	}
	gctx, gcancel := context.WithCancel(context.Background())
	g := &generation{e: e, feeds: feeds, ctx: gctx, cancel: gcancel, done: make(chan error, 1)}
	go func() {
		err := e.run(gctx, k.opts.NoPin)
		if err != nil && !stopped(err) {
			k.fail(err) // runPipeline's caller names the pipeline
		}
		g.done <- err
	}()
	k.cur.Store(g)
	k.opts.Logger.Info("pipeline assigned partitions", "pipeline", k.p.cfg.Name, "partitions", parts,
		"restored", len(parts)-len(missing))
	return next, nil
}

// revoked stops the generation, checkpointing it, before the partitions
// go to their next owners.
func (k *kafkaRun) revoked(ctx context.Context, _ *kgo.Client, _ map[string][]int32) {
	if err := k.stop(true, false); err != nil {
		k.fail(err)
	}
}

// lost stops the generation without a checkpoint: the partitions may
// already be someone else's (the session expired), and that owner
// restored them from the last checkpoint.
func (k *kafkaRun) lost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	if len(lost[k.src.Topic]) > 0 {
		k.opts.Logger.Warn("partitions lost (session expired?): restarting from the last checkpoint", "pipeline", k.p.cfg.Name)
	}
	k.stop(false, false)
}

func (k *kafkaRun) stop(save, final bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.stopLocked(save, final)
}

// stopLocked ends the running generation, if any, after its last complete
// round; with save its state is checkpointed; final prints the stats line.
func (k *kafkaRun) stopLocked(save, final bool) error {
	g := k.cur.Swap(nil)
	if g == nil {
		return nil
	}
	// Set before the cancel, which orders them before the engine's reads.
	g.e.statsOnStop = final
	if !save {
		g.e.save = func(*coordinator, time.Time) error { return nil }
	}
	g.cancel()
	err := <-g.done
	if stopped(err) {
		err = nil
	}
	return err
}

// deliverer moves fetched records into the current generation's feeds.
// It runs on the polling goroutine, the feeds' only producer.
type deliverer struct {
	g       *generation
	pending map[int32][]*kgo.Record // fetched, waiting for a free batch
}

// sync follows the current generation: a new one starts from its
// checkpointed offsets, so what was pending for the old one is dropped
// and its partitions resumed.
func (d *deliverer) sync(k *kafkaRun) *generation {
	g := k.cur.Load()
	if g != d.g {
		var paused []int32
		for p, recs := range d.pending {
			if len(recs) > pendingPause {
				paused = append(paused, p)
			}
		}
		if len(paused) > 0 {
			k.cl.ResumeFetchPartitions(map[string][]int32{k.src.Topic: paused})
		}
		d.g, d.pending = g, map[int32][]*kgo.Record{}
	}
	return g
}

// drain retries the pending records, resuming partitions that caught up.
func (d *deliverer) drain(k *kafkaRun) {
	g := d.sync(k)
	if g == nil {
		return
	}
	for p, recs := range d.pending {
		rest := d.fill(k, g, g.feeds[p], recs)
		if len(recs) > pendingPause && len(rest) <= pendingPause {
			k.cl.ResumeFetchPartitions(map[string][]int32{k.src.Topic: {p}})
		}
		if len(rest) > 0 {
			d.pending[p] = rest
		} else {
			delete(d.pending, p)
		}
	}
}

// deliver takes one partition's fetched records.
func (d *deliverer) deliver(k *kafkaRun, fp kgo.FetchTopicPartition) {
	g := d.sync(k)
	if g == nil || fp.Topic != k.src.Topic {
		return
	}
	fd := g.feeds[fp.Partition]
	if fd == nil {
		return // revoked since the fetch
	}
	fd.lagHW.Store(fp.HighWatermark)
	recs := fp.Records
	if prev := d.pending[fp.Partition]; len(prev) > 0 {
		recs = append(prev, recs...) // fetched before the pause took effect
	}
	if rest := d.fill(k, g, fd, recs); len(rest) > 0 {
		if len(rest) > pendingPause && len(d.pending[fp.Partition]) <= pendingPause {
			// Far behind: stop fetching it (a resume costs a fetch round
			// trip, so only then).
			k.cl.PauseFetchPartitions(map[string][]int32{k.src.Topic: {fp.Partition}})
		}
		d.pending[fp.Partition] = rest
	} else {
		delete(d.pending, fp.Partition)
	}
}

// pendingPause is how many records may wait for a partition's worker
// before its fetching pauses.
const pendingPause = 16 * batchRecords

// fill copies records into free batches and hands them to the worker; it
// returns the records there was no free batch for.
func (d *deliverer) fill(k *kafkaRun, g *generation, fd *feed, recs []*kgo.Record) []*kgo.Record {
	next := fd.fetched.Load()
	var b *batch
	for i, r := range recs {
		if r.Offset < next {
			continue // before the restored position
		}
		if b == nil {
			var ok bool
			if b, ok = fd.free.Pop(); !ok {
				return recs[i:]
			}
			b.reset()
		}
		next = r.Offset + 1
		if !r.Attrs.IsControl() { // a transaction marker only moves the position
			rec := log.Record{Partition: r.Partition, Offset: r.Offset, TimestampMs: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value}
			b.add(&rec)
		}
		if len(b.recs) == batchRecords {
			k.push(g, fd, b, next)
			b = nil
		}
	}
	if b != nil {
		k.push(g, fd, b, next)
	}
	return nil
}

// push hands a batch to the feed's worker.
func (k *kafkaRun) push(g *generation, fd *feed, b *batch, next int64) {
	b.end = next
	fd.full.Push(b) // cannot fail: feedDepth batches exist
	fd.fetched.Store(next)
	// Past the end at assignment, a Kafka feed is caught up when its worker
	// has processed everything delivered.
	if fd.hw.Load() < next {
		fd.hw.Store(next)
	}
	for _, f := range g.e.wakers {
		signal(f.delivered)
	}
}
