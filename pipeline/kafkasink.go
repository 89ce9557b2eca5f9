package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

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
