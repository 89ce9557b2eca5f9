package compat

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	kafka "github.com/segmentio/kafka-go"

	"github.com/fastflow/fastflow/partition"
)

// TestKafkaGo: segmentio/kafka-go's client creates a topic; its Writer
// writes keyed records with headers in every codec with acks=all, placed
// by its murmur2 balancer where Kafka's Java client (and fastflow) place a
// key; two Readers of one consumer group read them all and commit; the
// client fetches the commits and looks offsets up by time.
func TestKafkaGo(t *testing.T) {
	addr, l := startListener(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(addr)}
	const topic = "kafka-go"
	created, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 4, ReplicationFactor: 1}}})
	if err != nil || created.Errors[topic] != nil {
		t.Fatalf("CreateTopics: %v %v", err, created)
	}
	start := time.Now().Add(-time.Second)

	var recs []written
	const perCodec = 300
	n := 0
	for _, codec := range []kafka.Compression{0, kafka.Gzip, kafka.Snappy, kafka.Lz4, kafka.Zstd} {
		var mu sync.Mutex
		w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll,
			Compression: codec, BatchTimeout: 5 * time.Millisecond,
			Completion: func(msgs []kafka.Message, err error) {
				mu.Lock()
				defer mu.Unlock()
				for _, m := range msgs {
					if err != nil {
						t.Errorf("%v: %v", codec, err)
						continue
					}
					recs = append(recs, written{int32(m.Partition), m.Offset, string(m.Key), string(m.Value), string(m.Headers[0].Value)})
				}
			}}
		var msgs []kafka.Message
		for i := n; i < n+perCodec; i++ {
			msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("key-%d", i%37)), Value: []byte(fmt.Sprintf(`{"i":%d}`, i)),
				Headers: []kafka.Header{{Key: "n", Value: []byte(fmt.Sprint(i))}}})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("%v: %v", codec, err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		n += perCodec
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, r := range recs {
		if want := partition.ForKey([]byte(r.key), 4); r.partition != want {
			t.Fatalf("key %q on partition %d, murmur2 says %d", r.key, r.partition, want)
		}
	}
	checkInLog(t, l, topic, recs)

	// Two Readers of one group read everything and commit.
	var mu sync.Mutex
	seen := map[[2]int64]bool{}
	all := make(chan struct{})
	var wg sync.WaitGroup
	readCtx, stop := context.WithCancel(ctx)
	for range 2 {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, GroupID: "kafka-go group",
			StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond, HeartbeatInterval: 300 * time.Millisecond,
			SessionTimeout: 6 * time.Second, RebalanceTimeout: 5 * time.Second})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for {
				m, err := r.FetchMessage(readCtx)
				if err != nil {
					return
				}
				if err := r.CommitMessages(readCtx, m); err != nil && readCtx.Err() == nil {
					t.Errorf("CommitMessages: %v", err)
				}
				mu.Lock()
				seen[[2]int64{int64(m.Partition), m.Offset}] = true
				if len(seen) == len(recs) {
					close(all)
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-all:
	case <-time.After(90 * time.Second):
		mu.Lock()
		t.Fatalf("the group read %d of %d records", len(seen), len(recs))
	}
	stop()
	wg.Wait()

	tp, _ := l.Topic(topic)
	fetched, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: "kafka-go group", Topics: map[string][]int{topic: {0, 1, 2, 3}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(fetched.Topics[topic]) != 4 {
		t.Fatalf("OffsetFetch: %+v", fetched.Topics)
	}
	for _, p := range fetched.Topics[topic] {
		part, _ := tp.Partition(int32(p.Partition))
		if p.CommittedOffset != part.HighWatermark() || p.Error != nil {
			t.Fatalf("partition %d: committed %d (%v), high watermark %d", p.Partition, p.CommittedOffset, p.Error, part.HighWatermark())
		}
	}

	// Every record is newer than start: each partition's first offset.
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.TimeOffsetOf(0, start), kafka.TimeOffsetOf(1, start), kafka.TimeOffsetOf(2, start), kafka.TimeOffsetOf(3, start)}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(lo.Topics[topic]) != 4 {
		t.Fatalf("ListOffsets by time: %+v", lo.Topics)
	}
	for _, p := range lo.Topics[topic] {
		if _, ok := p.Offsets[0]; !ok || len(p.Offsets) != 1 || p.Error != nil {
			t.Fatalf("ListOffsets by time, partition %d: %+v", p.Partition, p)
		}
	}
}
