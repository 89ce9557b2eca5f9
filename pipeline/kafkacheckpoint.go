package pipeline

import (
	"bytes"
	"context"
	"encoding/gob"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

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
