package compat

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// TestSarama: sarama's admin client creates and describes a topic; its
// idempotent async producer writes keyed records with headers in every
// codec; two members of a consumer group (sticky assignment) consume them
// all and commit; the admin client reads the commits back, deletes records
// before an offset and deletes the topic. At the default protocol version
// sarama asks for and at a recent one.
func TestSarama(t *testing.T) {
	for _, v := range []sarama.KafkaVersion{sarama.DefaultVersion, sarama.V3_6_0_0} {
		t.Run(v.String(), func(t *testing.T) { testSarama(t, v) })
	}
}

func testSarama(t *testing.T, version sarama.KafkaVersion) {
	addr, l := startListener(t)
	brokers := []string{addr}
	cfg := sarama.NewConfig()
	cfg.Version = version
	cfg.ClientID = "sarama-test"
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Return.Successes = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond

	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	const topic = "sarama"
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 4, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"retention.ms": ptr("86400000")}}, false); err != nil {
		t.Fatal("CreateTopic: ", err)
	}
	md, err := admin.DescribeTopics([]string{topic})
	if err != nil || len(md) != 1 || len(md[0].Partitions) != 4 {
		t.Fatalf("DescribeTopics: %v %+v", err, md)
	}
	described, err := admin.DescribeConfigs([]*sarama.ConfigResource{{Type: sarama.TopicResource, Name: topic}},
		sarama.DescribeConfigsOptions{IncludeSynonyms: true, IncludeDocumentation: true})
	retention := ""
	for _, r := range described {
		for _, e := range r.Configs {
			if e.Name == "retention.ms" && r.ErrorCode == 0 {
				retention = e.Value
			}
		}
	}
	if err != nil || retention != "86400000" {
		t.Fatalf("DescribeConfigs: retention.ms %q, %v", retention, err)
	}

	// Produce.
	var recs []written
	const perCodec = 500
	codecs := []sarama.CompressionCodec{sarama.CompressionNone, sarama.CompressionGZIP, sarama.CompressionSnappy,
		sarama.CompressionLZ4, sarama.CompressionZSTD}
	n := 0
	for _, codec := range codecs {
		// A producer compresses with one codec: one producer a codec.
		pcfg := *cfg
		pcfg.Producer.Compression = codec
		p, err := sarama.NewAsyncProducer(brokers, &pcfg)
		if err != nil {
			t.Fatal(err)
		}
		go func(base int) {
			for i := base; i < base+perCodec; i++ {
				p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("key-%d", i%37)),
					Value:   sarama.StringEncoder(fmt.Sprintf(`{"i":%d}`, i)),
					Headers: []sarama.RecordHeader{{Key: []byte("n"), Value: []byte(fmt.Sprint(i))}}}
			}
		}(n)
		for range perCodec {
			select {
			case m := <-p.Successes():
				k, _ := m.Key.Encode()
				v, _ := m.Value.Encode()
				recs = append(recs, written{m.Partition, m.Offset, string(k), string(v), string(m.Headers[0].Value)})
			case err := <-p.Errors():
				t.Fatalf("%s: %v", codec, err)
			}
		}
		p.Close()
		n += perCodec
	}
	checkInLog(t, l, topic, recs)

	// Consume in a group of two.
	group, err := sarama.NewConsumerGroup(brokers, "sarama group", cfg)
	if err != nil {
		t.Fatal(err)
	}
	group2, err := sarama.NewConsumerGroup(brokers, "sarama group", cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &claimCounter{seen: map[[2]int64]bool{}, all: make(chan struct{}), want: len(recs)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, g := range []sarama.ConsumerGroup{group, group2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := g.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
					t.Errorf("Consume: %v", err)
					return
				}
			}
		}()
	}
	select {
	case <-h.all:
	case <-time.After(60 * time.Second):
		t.Fatalf("the group consumed %d of %d records", h.count(), len(recs))
	}
	cancel()
	wg.Wait()
	if err := group.Close(); err != nil {
		t.Fatal(err)
	}
	if err := group2.Close(); err != nil {
		t.Fatal(err)
	}
	if h.members() != 2 {
		t.Errorf("%d members held partitions, want 2", h.members())
	}

	// The commits, as sarama's admin and the log see them.
	tp, _ := l.Topic(topic)
	offsets, err := admin.ListConsumerGroupOffsets("sarama group", map[string][]int32{topic: {0, 1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := l.Group("sarama group")
	if err != nil {
		t.Fatal(err)
	}
	for id := range tp.Partitions() {
		part, _ := tp.Partition(id)
		b := offsets.GetBlock(topic, id)
		committed, ok, err := g.Committed(topic, id)
		if b == nil || b.Offset != part.HighWatermark() || !ok || err != nil || committed != part.HighWatermark() {
			t.Fatalf("partition %d: sarama's admin reads commit %+v, the log %d (%v, %v); high watermark %d",
				id, b, committed, ok, err, part.HighWatermark())
		}
	}
	if groups, err := admin.ListConsumerGroups(); err != nil || groups["sarama group"] != "consumer" {
		t.Fatalf("ListConsumerGroups: %v %v", groups, err)
	}

	// DeleteRecords moves the log start; DeleteTopic deletes the topic.
	if err := admin.DeleteRecords(topic, map[int32]int64{0: 10}); err != nil {
		t.Fatal("DeleteRecords: ", err)
	}
	if part, _ := tp.Partition(0); part.LogStartOffset() != 10 {
		t.Fatalf("after DeleteRecords(10): log start %d", part.LogStartOffset())
	}
	if err := admin.DeleteConsumerGroup("sarama group"); err != nil {
		t.Fatal("DeleteConsumerGroup: ", err)
	}
	if err := admin.DeleteTopic(topic); err != nil {
		t.Fatal("DeleteTopic: ", err)
	}
	if _, err := l.Topic(topic); err == nil {
		t.Fatal("the topic is still there after DeleteTopic")
	}
}

func ptr[T any](v T) *T { return &v }

// claimCounter is a sarama.ConsumerGroupHandler that marks each message
// consumed and closes all once every record was seen.
type claimCounter struct {
	mu      sync.Mutex
	seen    map[[2]int64]bool
	holders map[string]bool
	want    int
	all     chan struct{}
}

func (h *claimCounter) Setup(s sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holders == nil {
		h.holders = map[string]bool{}
	}
	if len(s.Claims()) > 0 {
		h.holders[s.MemberID()] = true
	}
	return nil
}

func (h *claimCounter) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *claimCounter) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		s.MarkMessage(m, "")
		h.mu.Lock()
		h.seen[[2]int64{int64(m.Partition), m.Offset}] = true
		if len(h.seen) == h.want {
			close(h.all)
		}
		h.mu.Unlock()
	}
	return nil
}

func (h *claimCounter) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

func (h *claimCounter) members() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.holders)
}
