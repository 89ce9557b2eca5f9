package log_test

import (
	"fmt"
	"os"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/partition"
)

// Append keyed records where murmur2 puts them, then read a partition back.
func Example() {
	dir, _ := os.MkdirTemp("", "fastflow-log-example-")
	defer os.RemoveAll(dir)
	l, _ := log.Open(dir, log.Options{})
	defer l.Close()
	t, _ := l.CreateTopic("orders", log.TopicConfig{Partitions: 3})

	key := []byte("user-1")
	p, _ := t.Partition(partition.ForKey(key, t.Partitions()))
	base, _ := p.Append([]log.Record{
		{Key: key, Value: []byte(`{"total":12}`), TimestampMs: 1795341600000},
		{Key: key, Value: []byte(`{"total":7}`), TimestampMs: 1795341601000},
	}, log.AcksAll) // fsynced before Append returns

	r, _ := p.NewReader(base)
	defer r.Close()
	recs, _ := r.Read(nil)
	for _, rec := range recs {
		fmt.Printf("%s/%d@%d %s %s\n", t.Name(), rec.Partition, rec.Offset, rec.Key, rec.Value)
	}
	// Output:
	// orders/2@0 user-1 {"total":12}
	// orders/2@1 user-1 {"total":7}
}
