package kafka_test

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/kafka"
)

// A Kafka client produces to a fastflow log; the record is the log's.
func Example() {
	dir, _ := os.MkdirTemp("", "fastflow-kafka-example-")
	defer os.RemoveAll(dir)
	l, _ := log.Open(dir, log.Options{})
	defer l.Close()
	l.CreateTopic("orders", log.TopicConfig{Partitions: 3})

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- kafka.New(l, kafka.Options{}).Serve(ctx, ln) }()

	cl, _ := kgo.NewClient(kgo.SeedBrokers(ln.Addr().String()), kgo.DefaultProduceTopic("orders"))
	r := &kgo.Record{Key: []byte("user-1"), Value: []byte(`{"total":12}`)}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		fmt.Println(err)
	}
	cl.Close()

	t, _ := l.Topic("orders")
	p, _ := t.Partition(r.Partition)
	rd, _ := p.NewReader(r.Offset)
	recs, _ := rd.Read(nil)
	fmt.Printf("partition %d offset %d: %s %s\n", recs[0].Partition, recs[0].Offset, recs[0].Key, recs[0].Value)
	rd.Close()

	stop()
	<-done
	// Output: partition 2 offset 0: user-1 {"total":12}
}
