package pipeline

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

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

// save writes the coordinator's state, one snapshot per source
// partition, to the checkpoint topic, then commits the positions to the
// group. It runs on the engine's coordinating goroutine.
func (k *kafkaRun) save(c *coordinator, now time.Time) error {
	if n := c.keys.spreadKeys(); n > 0 && k.warnedSpr.CompareAndSwap(false, true) {
		k.opts.Logger.Warn("group keys arrive on more than one partition: their state cannot move with a partition; produce with the group-by fields as the record key",
			"pipeline", k.p.cfg.Name, "keys", n)
	}
	// The local topics' records go to disk, and the Kafka sinks' are
	// acknowledged, before the checkpoint that covers them; each
	// partition's snapshot records their ends, and the records its replay
	// has not met yet, for its next owner (localSink), with the outputs of
	// other data directories carried from the checkpoint it was restored
	// from (emitter.foreign).
	outs, err := k.out.outputs()
	if err != nil {
		return err
	}
	snaps := c.snapshotByPartition(now)
	for p, s := range snaps {
		for _, o := range outs {
			s.Outputs = append(s.Outputs, o.forSource(p))
		}
		s.Outputs = append(s.Outputs, k.out.foreign[p]...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), kafkaIOTimeout)
	defer cancel()
	if err := writeCheckpoints(ctx, k.cl, k.src, k.p.cfg.Name, k.instance, now, snaps); err != nil {
		return fmt.Errorf("checkpoint to %s: %w", k.src.CheckpointTopic, err)
	}
	offsets := map[int32]kgo.EpochOffset{}
	for p, s := range snaps {
		offsets[p] = kgo.EpochOffset{Epoch: -1, Offset: s.Parts[0].Next}
	}
	k.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{k.src.Topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err == nil {
				for _, t := range resp.Topics {
					for _, p := range t.Partitions {
						if err == nil {
							err = kerr.ErrorForCode(p.ErrorCode)
						}
					}
				}
			}
			if err != nil {
				// The checkpoint topic holds the positions; the commit only
				// shows Kafka's tools the group's progress.
				k.opts.Logger.Warn("commit to the group failed", "pipeline", k.p.cfg.Name, "err", err)
			}
		})
	return nil
}

// snapshotByPartition splits the coordinator's state by the source
// partition each key's events come from.
func (c *coordinator) snapshotByPartition(now time.Time) map[int32]*snapshot {
	whole := c.snapshot(now)
	out := map[int32]*snapshot{}
	first := int32(math.MaxInt32)
	for _, ps := range whole.Parts {
		out[ps.ID] = &snapshot{Version: whole.Version, Fingerprint: whole.Fingerprint, WrittenMs: whole.WrittenMs,
			Watermark: whole.Watermark, Parts: []partSnap{ps}}
		first = min(first, ps.ID)
	}
	if len(out) == 0 {
		return out
	}
	out[first].LatePurged = whole.LatePurged
	owner := func(key string) *snapshot {
		if s := out[c.keys.partitionOf(key)]; s != nil {
			return s
		}
		return out[first]
	}
	for _, w := range whole.Windows {
		s := owner(w.Key)
		s.Windows = append(s.Windows, w)
	}
	for _, a := range whole.Alerts {
		s := owner(a.Key)
		s.Alerts = append(s.Alerts, a)
	}
	return out
}

// The checkpoint topic holds, per pipeline, source topic and partition,
// the latest snapshot in chunks small enough for any broker's message
// limit, keyed PIPELINE/TOPIC/PARTITION/CHUNK (so that compaction keeps
// the latest of each), each chunk with headers naming its checkpoint and
// the number of chunks: a checkpoint counts only when all of its chunks
// are read.
const (
	checkpointChunkBytes = 256 << 10
	headerCheckpoint     = "fastflow-checkpoint"
	headerChunks         = "fastflow-chunks"
)

func checkpointKeyPrefix(pipeline, topic string) string { return pipeline + "/" + topic + "/" }

func writeCheckpoints(ctx context.Context, cl *kgo.Client, src *KafkaSource, pipeline, instance string, now time.Time, snaps map[int32]*snapshot) error {
	id := fmt.Sprintf("%016x-%s", now.UnixNano(), instance)
	var recs []*kgo.Record
	for p, s := range snaps {
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(s); err != nil {
			return err
		}
		b := buf.Bytes()
		n := (len(b) + checkpointChunkBytes - 1) / checkpointChunkBytes
		for i := 0; i < n; i++ {
			chunk := b[i*checkpointChunkBytes : min(len(b), (i+1)*checkpointChunkBytes)]
			recs = append(recs, &kgo.Record{
				Topic: src.CheckpointTopic,
				Key:   fmt.Appendf(nil, "%s%d/%d", checkpointKeyPrefix(pipeline, src.Topic), p, i),
				Value: chunk,
				Headers: []kgo.RecordHeader{
					{Key: headerCheckpoint, Value: []byte(id)},
					{Key: headerChunks, Value: strconv.AppendInt(nil, int64(n), 10)},
				},
			})
		}
	}
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

// readCheckpoints reads the checkpoint topic to its end and returns, for
// each of parts, the latest complete snapshot of the pipeline's source.
// The end offsets are asked through cl; the records are read by a client
// of their own, which consumes the topic directly (outside any group).
func readCheckpoints(ctx context.Context, cl *kgo.Client, src *KafkaSource, c *Config, parts []int32) (map[int32]*snapshot, error) {
	ends, err := endOffsets(ctx, cl, src.CheckpointTopic)
	if err != nil {
		return nil, err
	}
	consume := map[int32]kgo.Offset{}
	for p, end := range ends {
		if end > 0 {
			consume[p] = kgo.NewOffset().AtStart()
		}
	}
	type pending struct {
		id     string
		n      int
		chunks map[int][]byte
	}
	want := map[int32]bool{}
	for _, p := range parts {
		want[p] = true
	}
	prefix := checkpointKeyPrefix(c.Name, src.Topic)
	building := map[int32]*pending{}
	complete := map[int32][]byte{}
	if len(consume) > 0 {
		rd, err := kgo.NewClient(kgo.SeedBrokers(src.Brokers...),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{src.CheckpointTopic: consume}))
		if err != nil {
			return nil, err
		}
		defer rd.Close()
		left := len(consume)
		reached := map[int32]bool{}
		for left > 0 {
			fs := rd.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("reading %s: %w", src.CheckpointTopic, err)
			}
			var ferr error
			fs.EachError(func(_ string, _ int32, err error) { ferr = err })
			if ferr != nil {
				return nil, ferr
			}
			fs.EachRecord(func(r *kgo.Record) {
				if r.Offset+1 >= ends[r.Partition] && !reached[r.Partition] {
					reached[r.Partition] = true
					left--
				}
				rest, ok := strings.CutPrefix(string(r.Key), prefix)
				if !ok {
					return
				}
				ps, cs, ok := strings.Cut(rest, "/")
				p, err1 := strconv.ParseInt(ps, 10, 32)
				ci, err2 := strconv.Atoi(cs)
				if !ok || err1 != nil || err2 != nil || !want[int32(p)] {
					return
				}
				var id string
				n := 0
				for _, h := range r.Headers {
					switch h.Key {
					case headerCheckpoint:
						id = string(h.Value)
					case headerChunks:
						n, _ = strconv.Atoi(string(h.Value))
					}
				}
				if id == "" || n <= 0 || ci >= n {
					return
				}
				b := building[int32(p)]
				if b == nil || b.id != id {
					b = &pending{id: id, n: n, chunks: map[int][]byte{}}
					building[int32(p)] = b
				}
				b.chunks[ci] = r.Value
				if len(b.chunks) == b.n {
					var all []byte
					for i := 0; i < b.n; i++ {
						all = append(all, b.chunks[i]...)
					}
					complete[int32(p)] = all
					delete(building, int32(p))
				}
			})
		}
	}
	out := map[int32]*snapshot{}
	for p, b := range complete {
		var s snapshot
		if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&s); err != nil {
			return nil, fmt.Errorf("%w: the checkpoint of %s partition %d in %s does not decode: %v", ErrBadCheckpoint, src.Topic, p, src.CheckpointTopic, err)
		}
		if s.Version != checkpointVersion || s.Fingerprint != fingerprint(c) {
			return nil, fmt.Errorf("%w: the checkpoint of %s partition %d in %s was written for another definition of pipeline %s; use another group or checkpoint_topic to start over",
				ErrBadCheckpoint, src.Topic, p, src.CheckpointTopic, c.Name)
		}
		if len(s.Parts) != 1 || s.Parts[0].ID != p {
			return nil, fmt.Errorf("%w: the checkpoint of %s partition %d in %s holds another partition", ErrBadCheckpoint, src.Topic, p, src.CheckpointTopic)
		}
		out[p] = &s
	}
	return out, nil
}

// ensureTopic creates a topic unless it exists.
// topicExists asks the cluster for topic's metadata, without creating it.
func topicExists(ctx context.Context, cl *kgo.Client, topic string) error {
	md := kmsg.NewPtrMetadataRequest()
	md.AllowAutoTopicCreation = false
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	md.Topics = append(md.Topics, mt)
	resp, err := md.RequestWith(ctx, cl)
	switch {
	case err != nil:
		return fmt.Errorf("topic %s: %w", topic, err)
	case len(resp.Topics) != 1:
		return fmt.Errorf("topic %s: metadata of %d topics", topic, len(resp.Topics))
	case resp.Topics[0].ErrorCode == kerr.UnknownTopicOrPartition.Code:
		return fmt.Errorf("topic %q does not exist on the cluster: create it first", topic)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		return fmt.Errorf("topic %s: %w", topic, err)
	}
	return nil
}

func ensureTopic(ctx context.Context, cl *kgo.Client, name string, partitions int32, configs map[string]string) error {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = int32(kafkaIOTimeout / time.Millisecond)
	t := kmsg.NewCreateTopicsRequestTopic()
	t.Topic, t.NumPartitions, t.ReplicationFactor = name, partitions, -1
	for k, v := range configs {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		t.Configs = append(t.Configs, c)
	}
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return err
	}
	return nil
}

// endOffsets lists a topic's partitions' high watermarks.
func endOffsets(ctx context.Context, cl *kgo.Client, topic string) (map[int32]int64, error) {
	md := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	md.Topics = append(md.Topics, mt)
	mresp, err := md.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	if len(mresp.Topics) != 1 {
		return nil, fmt.Errorf("metadata of %s: %d topics", topic, len(mresp.Topics))
	}
	if err := kerr.ErrorForCode(mresp.Topics[0].ErrorCode); err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	var parts []int32
	for _, p := range mresp.Topics[0].Partitions {
		parts = append(parts, p.Partition)
	}
	return listOffsets(ctx, cl, topic, parts, -1)
}

// listOffsets asks for each partition's offset at ts (-1 latest, -2
// earliest, else the first record at or after ts ms; the end if none).
func listOffsets(ctx context.Context, cl *kgo.Client, topic string, parts []int32, ts int64) (map[int32]int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for _, p := range parts {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, ts
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, fmt.Errorf("offsets of %s/%d: %w", topic, p.Partition, err)
			}
			out[p.Partition] = p.Offset
		}
	}
	if ts >= 0 {
		// No record at or after ts: the end.
		var missing []int32
		for _, p := range parts {
			if out[p] < 0 {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			ends, err := listOffsets(ctx, cl, topic, missing, -1)
			if err != nil {
				return nil, err
			}
			for p, o := range ends {
				out[p] = o
			}
		}
	}
	return out, nil
}

// startOffsets is where partitions without a checkpoint start: the
// group's committed offset, else the source's start.
func startOffsets(ctx context.Context, cl *kgo.Client, src *KafkaSource, parts []int32, start log.Start) (map[int32]int64, error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = src.Group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = src.Topic, parts
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, fmt.Errorf("committed offsets of group %s: %w", src.Group, err)
	}
	out := map[int32]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 && p.Offset >= 0 {
				out[p.Partition] = p.Offset
			}
		}
	}
	var rest []int32
	for _, p := range parts {
		if _, ok := out[p]; !ok {
			rest = append(rest, p)
		}
	}
	if len(rest) == 0 {
		return out, nil
	}
	earliest, err := listOffsets(ctx, cl, src.Topic, rest, -2)
	if err != nil {
		return nil, err
	}
	var resolved map[int32]int64
	switch start.Kind {
	case log.StartLatest:
		resolved, err = listOffsets(ctx, cl, src.Topic, rest, -1)
	case log.StartTime:
		resolved, err = listOffsets(ctx, cl, src.Topic, rest, start.TimeMs)
	case log.StartOffset:
		ends, lerr := listOffsets(ctx, cl, src.Topic, rest, -1)
		resolved, err = map[int32]int64{}, lerr
		for _, p := range rest {
			resolved[p] = max(earliest[p], min(start.Offset, ends[p]))
		}
	default:
		resolved = earliest
	}
	if err != nil {
		return nil, err
	}
	for _, p := range rest {
		out[p] = resolved[p]
	}
	return out, nil
}

// kafkaSink writes a pipeline's results and alerts to a Kafka topic,
// keyed by the group key, as the topic sink does in the local log.
type kafkaSink struct {
	cl        *kgo.Client
	brokers   []string
	topic     string
	errMu     sync.Mutex
	err       error
	replaying // after a restart: what the stopped run wrote after its checkpoint (localSink)
}

func newKafkaSink(s SinkConfig) (*kafkaSink, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Brokers...), kgo.DefaultProduceTopic(s.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ClientID("fastflow"))
	if err != nil {
		return nil, fmt.Errorf("kafka sink %s: %w", s.Topic, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), kafkaIOTimeout)
	defer cancel()
	if err := ensureTopic(ctx, cl, s.Topic, 1, nil); err != nil {
		cl.Close()
		return nil, fmt.Errorf("kafka sink %s: %w", s.Topic, err)
	}
	return &kafkaSink{cl: cl, brokers: s.Brokers, topic: s.Topic}, nil
}

// add produces a record from source partition src (noPartition: untold),
// unless the stopped run wrote it after the checkpoint (localSink.add).
func (ks *kafkaSink) add(key, value []byte, src int32, tsMs int64) {
	if ks.skip(src, key, value) {
		return
	}
	r := &kgo.Record{Key: key, Value: bytes.Clone(value), Timestamp: time.UnixMilli(tsMs)}
	if src != noPartition {
		r.Headers = []kgo.RecordHeader{{Key: headerSource, Value: strconv.AppendInt(nil, int64(src), 10)}}
	}
	ks.cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
		if err != nil {
			ks.errMu.Lock()
			if ks.err == nil {
				ks.err = err
			}
			ks.errMu.Unlock()
		}
	})
}

// flush waits until everything added is acknowledged.
func (ks *kafkaSink) flush() error {
	ctx, cancel := context.WithTimeout(context.Background(), kafkaIOTimeout)
	defer cancel()
	if err := ks.cl.Flush(ctx); err != nil {
		return fmt.Errorf("kafka sink %s: %w", ks.topic, err)
	}
	ks.errMu.Lock()
	defer ks.errMu.Unlock()
	if ks.err != nil {
		return fmt.Errorf("kafka sink %s: %w", ks.topic, ks.err)
	}
	return nil
}

// outputName names a Kafka sink's topic in a checkpoint's outputs, apart
// from the local topics (whose names have no slash).
func (ks *kafkaSink) outputName() string { return "kafka/" + ks.topic }

// owns reports whether o is about this sink's topic (one topic whichever
// instance writes it).
func (ks *kafkaSink) owns(o outputSnap) bool { return o.Topic == ks.outputName() }

// ends returns the sink topic's partition ends, and, while it replays,
// what it has not met; what was added is acknowledged by all in-sync
// replicas (flush).
func (ks *kafkaSink) ends() (outputSnap, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kafkaIOTimeout)
	defer cancel()
	ends, err := endOffsets(ctx, ks.cl, ks.topic)
	if err != nil {
		return outputSnap{}, fmt.Errorf("kafka sink %s: %w", ks.topic, err)
	}
	o := outputSnap{Topic: ks.outputName(), Ends: make([]int64, len(ends))}
	for p, end := range ends {
		if int(p) < len(o.Ends) {
			o.Ends[p] = end
		}
	}
	return ks.checkpointed(o), nil
}

// replayAfter reads what was written to the sink topic after the
// checkpoints c, to be skipped (localSink.replayAfter).
func (ks *kafkaSink) replayAfter(c sinceCheckpoints, budget *int) (*replay, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kafkaIOTimeout)
	defer cancel()
	now, err := endOffsets(ctx, ks.cl, ks.topic)
	if err != nil {
		return nil, fmt.Errorf("kafka sink %s: %w", ks.topic, err)
	}
	r := c.replay(len(now), budget)
	tails, err := ks.readAfter(ctx, c, now, budget)
	if err != nil {
		return nil, fmt.Errorf("kafka sink %s: reading what was written after the checkpoint: %w", ks.topic, err)
	}
	for p, t := range tails {
		r.add(int(p), t.q)
	}
	return r, nil
}

// readAfter reads each partition's records from the checkpoints' ends to
// now into a tail, directly, outside any group; a partition whose records
// are not all there (compacted, or deleted and reset to the start) reads
// as none.
func (ks *kafkaSink) readAfter(ctx context.Context, c sinceCheckpoints, now map[int32]int64, budget *int) (map[int32]*tail, error) {
	consume := map[int32]kgo.Offset{}
	tails := map[int32]*tail{}
	for p, end := range now {
		if start, ok := c.start(int(p)); ok && start < end {
			consume[p] = kgo.NewOffset().At(start)
			tails[p] = c.tail(int(p), start)
		}
	}
	if len(consume) == 0 {
		return nil, nil
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(ks.brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{ks.topic: consume}))
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	for len(consume) > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(rec *kgo.Record) {
			p := rec.Partition
			if _, reading := consume[p]; !reading {
				return
			}
			if !tails[p].take(rec.Offset, kafkaRecordSource(rec.Headers), rec.Key, rec.Value, budget) || rec.Offset+1 >= now[p] {
				delete(consume, p) // read to the end, or to a gap or the budget: what is left is written again
			}
		})
	}
	return tails, nil
}

// kafkaRecordSource is recordSource for a Kafka record's headers.
func kafkaRecordSource(hs []kgo.RecordHeader) int32 {
	for _, h := range hs {
		if h.Key == headerSource {
			return sourceOf(h.Value)
		}
	}
	return noPartition
}

func (ks *kafkaSink) close() error {
	err := ks.flush()
	ks.cl.Close()
	return err
}
