package log_test

import (
	"fmt"
	"os"
	"time"

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

// Change a topic's retention, as kafka-configs --alter does: the settings
// changed, the others kept, the partitions fixed.
func ExampleTopic_AlterConfig() {
	dir, _ := os.MkdirTemp("", "fastflow-log-example-")
	defer os.RemoveAll(dir)
	l, _ := log.Open(dir, log.Options{})
	defer l.Close()
	t, _ := l.CreateTopic("logs", log.TopicConfig{Partitions: 2, MaxRecordBytes: 4096})

	cfg, err := t.AlterConfig(func(c *log.TopicConfig) error {
		c.Retention = 24 * time.Hour
		c.RetentionBytes = 10 << 30
		return nil
	})
	fmt.Println(cfg.Retention, cfg.RetentionBytes, cfg.MaxRecordBytes, err)
	_, err = t.AlterConfig(func(c *log.TopicConfig) error { c.Partitions = 4; return nil })
	fmt.Println(err)
	// Output:
	// 24h0m0s 10737418240 4096 <nil>
	// topic "logs": the number of partitions (2) changes only by adding partitions (AddPartitions)
}

// A consumer group's position, then the group deleted with its offsets.
func ExampleGroup_Describe() {
	dir, _ := os.MkdirTemp("", "fastflow-log-example-")
	defer os.RemoveAll(dir)
	l, _ := log.Open(dir, log.Options{})
	defer l.Close()
	t, _ := l.CreateTopic("jobs", log.TopicConfig{Partitions: 1})
	p, _ := t.Partition(0)
	p.Append([]log.Record{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}}, log.AcksLeader)

	g, _ := l.Group("workers")
	g.Commit("jobs", 0, 1)
	rows, _ := g.Describe()
	for _, r := range rows {
		fmt.Printf("%s %s/%d committed %d lag %d\n", r.Group, r.Topic, r.Partition, *r.Committed, *r.Lag)
	}
	fmt.Println(g.Delete())
	rows, _ = g.Describe()
	fmt.Println(len(rows))
	// Output:
	// workers jobs/0 committed 1 lag 2
	// <nil>
	// 0
}
