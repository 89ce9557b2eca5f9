package producer_test

import (
	"fmt"
	"os"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/producer"
)

// Produce keyed and unkeyed records as a Kafka producer does: each key
// to the partition murmur2 gives it (so one key's records stay in order),
// null keys spread in sticky batches; Close appends what is left and
// waits for the acks.
func Example() {
	dir, _ := os.MkdirTemp("", "fastflow-producer-example-")
	defer os.RemoveAll(dir)
	l, _ := log.Open(dir, log.Options{})
	defer l.Close()
	t, _ := l.CreateTopic("events", log.TopicConfig{Partitions: 3})

	pr, _ := producer.New(t, producer.Options{Acks: log.AcksLeader, Partition: -1})
	for i := range 4 {
		service := []string{"payments", "auth"}[i%2]
		value := fmt.Appendf(nil, `{"service":%q,"n":%d}`, service, i)
		if err := pr.Add([]byte(service), value, 1795341600000+int64(i)); err != nil {
			fmt.Println(err)
		}
	}
	headers := []log.Header{{Key: []byte("trace"), Value: []byte("abc")}}
	if err := pr.AddHeaders(nil, []byte(`{"n":4}`), headers, 0); err != nil { // no key, time: now
		fmt.Println(err)
	}
	if err := pr.Close(); err != nil {
		fmt.Println(err)
	}
	s := pr.Stats()
	fmt.Println(s.Records, "records,", s.NoKey, "without a key")

	for id := range t.Partitions() {
		p, _ := t.Partition(id)
		r, _ := p.NewReader(0)
		recs, _ := r.Read(nil)
		for _, rec := range recs {
			if rec.Key != nil {
				fmt.Printf("%s -> partition %d offset %d\n", rec.Key, rec.Partition, rec.Offset)
			}
		}
		r.Close()
	}
	// Output:
	// 5 records, 1 without a key
	// auth -> partition 1 offset 0
	// auth -> partition 1 offset 1
	// payments -> partition 2 offset 0
	// payments -> partition 2 offset 1
}
