package pipeline

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/producer"
	"github.com/fastflow/fastflow/partition"
)

// sinkOn returns a localSink writing t, as the emitter opens one.
func sinkOn(t *testing.T, topic *log.Topic) *localSink {
	t.Helper()
	pr, err := producer.New(topic, producer.Options{Acks: log.AcksLeader, Partition: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close() })
	return &localSink{t: topic, pr: pr}
}

// write adds "key=value" records ("value" alone: a null key) and flushes.
func write(t *testing.T, s *localSink, recs ...string) {
	t.Helper()
	for _, r := range recs {
		var key []byte
		k, v, ok := cut(r)
		if ok {
			key = []byte(k)
		}
		if err := s.add(key, []byte(v), noPartition, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.pr.Flush(); err != nil {
		t.Fatal(err)
	}
}

func cut(r string) (key, value string, keyed bool) {
	for i := range len(r) {
		if r[i] == '=' {
			return r[:i], r[i+1:], true
		}
	}
	return "", r, false
}

// contents returns each partition's records as write takes them.
func contents(t *testing.T, topic *log.Topic) [][]string {
	t.Helper()
	out := make([][]string, topic.Partitions())
	for i := range out {
		p, err := topic.Partition(int32(i))
		if err != nil {
			t.Fatal(err)
		}
		rd, err := p.NewReader(p.LogStartOffset())
		if err != nil {
			t.Fatal(err)
		}
		for rd.Offset() < p.HighWatermark() {
			recs, err := rd.Read(nil)
			if err != nil || len(recs) == 0 {
				t.Fatal(err)
			}
			for _, r := range recs {
				if r.Key == nil {
					out[i] = append(out[i], string(r.Value))
				} else {
					out[i] = append(out[i], string(r.Key)+"="+string(r.Value))
				}
			}
		}
		rd.Close()
	}
	return out
}

// killedRun writes before, takes the ends a checkpoint records, writes
// killed (what a run killed after that checkpoint wrote) and returns the
// ends.
func killedRun(t *testing.T, topic *log.Topic, before, killed []string) outputSnap {
	t.Helper()
	first := sinkOn(t, topic)
	write(t, first, before...)
	o, err := first.ends()
	if err != nil {
		t.Fatal(err)
	}
	write(t, first, killed...)
	return o
}

// allContents is every partition's records (contents), sorted.
func allContents(t *testing.T, topic *log.Topic) []string {
	var all []string
	for _, p := range contents(t, topic) {
		all = append(all, p...)
	}
	slices.Sort(all)
	return all
}

// restart is a killedRun and a restart resuming from its checkpoint: it
// returns the restart's sink, which has written nothing yet.
func restart(t *testing.T, topic *log.Topic, before, killed []string) *localSink {
	t.Helper()
	o := killedRun(t, topic, before, killed)
	again := sinkOn(t, topic)
	if err := resumeSink(again, o); err != nil {
		t.Fatal(err)
	}
	return again
}

// kafkaSinkOn returns a Kafka sink writing kp.results on the broker at
// addr.
func kafkaSinkOn(t *testing.T, addr string) *kafkaSink {
	t.Helper()
	ks, err := newKafkaSink(SinkConfig{Type: "kafka", Brokers: []string{addr}, Topic: "kp.results"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ks.close() })
	return ks
}

// resumeSink has r skip what was written after the checkpoint o is from,
// as emitter.resume does for each sink.
func resumeSink(r resumable, o outputSnap) error {
	if !r.owns(o) {
		return nil
	}
	budget := replayBudget
	rp, err := r.replayAfter(sinceCheckpoints{noPartition: o}, &budget)
	if rp != nil {
		r.start(rp)
	}
	return err
}

// TestReplaySkipsWhatTheKilledRunWrote: a restart does not write again a
// record identical to one the killed run wrote after its checkpoint (in
// the record's partition), in whatever order it comes, each of those
// matching one record at most: a record is skipped only where an
// identical one is in the topic.
func TestReplaySkipsWhatTheKilledRunWrote(t *testing.T) {
	t.Run("same output", func(t *testing.T) {
		_, topic := testTopic(t, 1)
		s := restart(t, topic, []string{"k=a", "k=b"}, []string{"k=c", "k=d"})
		write(t, s, "k=c", "k=d", "k=e")
		if got, want := contents(t, topic)[0], []string{"k=a", "k=b", "k=c", "k=d", "k=e"}; !slices.Equal(got, want) {
			t.Fatalf("topic %v, want %v", got, want)
		}
		if s.replay != nil {
			t.Fatal("the replay is kept once all of it was met")
		}
	})
	t.Run("another order", func(t *testing.T) {
		// Rounds cut elsewhere: the same lines in another order, one (x)
		// the killed run did not write, and one of its (z) that does not
		// come again; each of its records is met once, and d, which it
		// wrote once, is written the second time it comes.
		_, topic := testTopic(t, 1)
		s := restart(t, topic, []string{"k=a"}, []string{"k=b", "k=c", "k=d", "k=z"})
		write(t, s, "k=c", "k=x", "k=b", "k=d", "k=d")
		if got, want := contents(t, topic)[0], []string{"k=a", "k=b", "k=c", "k=d", "k=z", "k=x", "k=d"}; !slices.Equal(got, want) {
			t.Fatalf("topic %v, want %v", got, want)
		}
	})
	t.Run("past the budget", func(t *testing.T) {
		// Room for two of the killed run's three records: the third is
		// written again.
		defer func(b int) { replayBudget = b }(replayBudget)
		replayBudget = 2 * (len(recordID(nil, noPartition, []byte("k"), []byte("b"))) + 48)
		_, topic := testTopic(t, 1)
		s := restart(t, topic, []string{"k=a"}, []string{"k=b", "k=c", "k=d"})
		write(t, s, "k=b", "k=c", "k=d", "k=e")
		if got, want := contents(t, topic)[0], []string{"k=a", "k=b", "k=c", "k=d", "k=d", "k=e"}; !slices.Equal(got, want) {
			t.Fatalf("topic %v, want %v", got, want)
		}
	})
	t.Run("null and empty keys differ", func(t *testing.T) {
		_, topic := testTopic(t, 1)
		s := restart(t, topic, nil, []string{"v"})
		write(t, s, "=v") // an empty key: another record
		if got, want := contents(t, topic)[0], []string{"v", "=v"}; !slices.Equal(got, want) {
			t.Fatalf("topic %v, want %v", got, want)
		}
	})
	t.Run("keyed partitions", func(t *testing.T) {
		_, topic := testTopic(t, 3)
		keys := distinctPartitions(t, 3)
		k0, k1, k2 := keys[0], keys[1], keys[2]
		// The killed run wrote two records of k0's partition and one of
		// k1's; the restart writes k2 (a partition it wrote nothing to
		// after the checkpoint), then the same as the killed run, then a
		// record of k1's partition that differs.
		s := restart(t, topic, []string{k0 + "=a"}, []string{k0 + "=b", k1 + "=c", k0 + "=d"})
		write(t, s, k2+"=e", k0+"=b", k1+"=c", k0+"=d", k1+"=f", k0+"=g")
		got := contents(t, topic)
		want := map[string][]string{k0: {k0 + "=a", k0 + "=b", k0 + "=d", k0 + "=g"}, k1: {k1 + "=c", k1 + "=f"}, k2: {k2 + "=e"}}
		for k, w := range want {
			if p := partition.ForKey([]byte(k), 3); !slices.Equal(got[p], w) {
				t.Fatalf("partition %d: %v, want %v", p, got[p], w)
			}
		}
	})
	t.Run("null keys over partitions", func(t *testing.T) {
		_, topic := testTopic(t, 3)
		// The sticky partitioner puts a batch on one partition: the
		// killed run's records are found in whichever partition holds
		// them.
		s := restart(t, topic, []string{"a"}, []string{"b", "c"})
		write(t, s, "b", "c", "d")
		all := allContents(t, topic)
		if want := []string{"a", "b", "c", "d"}; !slices.Equal(all, want) {
			t.Fatalf("topic %v, want %v", all, want)
		}
	})
	t.Run("null key found nowhere", func(t *testing.T) {
		_, topic := testTopic(t, 2)
		s := restart(t, topic, nil, []string{"b", "c"})
		write(t, s, "x", "b", "c", "c")
		all := allContents(t, topic)
		if want := []string{"b", "c", "c", "x"}; !slices.Equal(all, want) {
			t.Fatalf("topic %v, want %v", all, want)
		}
	})
}

// distinctPartitions returns n keys that go to n different partitions
// of a topic of n partitions.
func distinctPartitions(t *testing.T, n int32) []string {
	t.Helper()
	keys := make([]string, n)
	found := 0
	for i := 0; found < int(n) && i < 1000; i++ {
		k := fmt.Sprintf("key-%d", i)
		if p := partition.ForKey([]byte(k), n); keys[p] == "" {
			keys[p] = k
			found++
		}
	}
	if found < int(n) {
		t.Fatal("no keys for every partition")
	}
	return keys
}

// TestReplayNotFromAnotherTopic: a checkpoint's ends apply to the topic
// it was taken over, not to one deleted and created again since under its
// name, nor where records after them were deleted (retention,
// DeleteRecords): then nothing is skipped.
func TestReplayNotFromAnotherTopic(t *testing.T) {
	t.Run("created again", func(t *testing.T) {
		l, topic := testTopic(t, 1)
		o := killedRun(t, topic, []string{"k=a"}, []string{"k=b"})
		if err := l.DeleteTopic("events"); err != nil {
			t.Fatal(err)
		}
		again, err := l.CreateTopic("events", log.TopicConfig{Partitions: 1})
		if err != nil {
			t.Fatal(err)
		}
		s := sinkOn(t, again)
		write(t, s, "k=x", "k=b")
		if err := resumeSink(s, o); err != nil {
			t.Fatal(err)
		}
		if s.replay != nil {
			t.Fatal("a replay of another topic's records")
		}
	})
	t.Run("deleted records", func(t *testing.T) {
		_, topic := testTopic(t, 1)
		o := killedRun(t, topic, []string{"k=a"}, []string{"k=b", "k=c"})
		p, _ := topic.Partition(0)
		if _, err := p.DeleteRecords(2); err != nil {
			t.Fatal(err)
		}
		s := sinkOn(t, topic)
		if err := resumeSink(s, o); err != nil {
			t.Fatal(err)
		}
		if s.replay != nil {
			t.Fatal("a replay from before the log start")
		}
	})
}

// TestOutputsFsyncBeforeCheckpoint: the ends a checkpoint records are on
// disk, so that a power loss cannot keep a checkpoint whose results are
// gone (the restart would not compute them again).
func TestOutputsFsyncBeforeCheckpoint(t *testing.T) {
	_, topic := testTopic(t, 2)
	s := sinkOn(t, topic)
	write(t, s, "k=a", "j=b")
	e := &emitter{p: &plan{cfg: &Config{Name: "kp"}}, topics: []*localSink{s}, locals: []*localSink{s}}
	before := fsyncs(t, topic)
	outs, err := e.outputs()
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 1 || !slices.Equal(outs[0].Ends, []int64{partitionEnd(t, topic, 0), partitionEnd(t, topic, 1)}) {
		t.Fatalf("outputs %+v", outs)
	}
	for i, n := range fsyncs(t, topic) {
		if end := outs[0].Ends[i]; end > 0 && n <= before[i] {
			t.Fatalf("partition %d holds %d records, not fsynced (fsyncs %d before, %d after)", i, end, before[i], n)
		}
	}
}

func fsyncs(t *testing.T, topic *log.Topic) []int64 {
	var n []int64
	for i := range topic.Partitions() {
		p, err := topic.Partition(i)
		if err != nil {
			t.Fatal(err)
		}
		n = append(n, p.Stats().Fsyncs)
	}
	return n
}

func partitionEnd(t *testing.T, topic *log.Topic, i int32) int64 {
	p, err := topic.Partition(i)
	if err != nil {
		t.Fatal(err)
	}
	return p.HighWatermark()
}

// TestKafkaSinkSkipsWhatTheKilledRunWrote: a Kafka sink resuming from a
// checkpoint reads what was produced to its topic after the checkpoint's
// ends and does not produce it again (localSink's rule).
func TestKafkaSinkSkipsWhatTheKilledRunWrote(t *testing.T) {
	addr, bl := broker(t)
	produce := func(ks *kafkaSink, recs ...string) {
		t.Helper()
		for _, r := range recs {
			k, v, _ := cut(r)
			ks.add([]byte(k), []byte(v), noPartition, 1)
		}
		if err := ks.flush(); err != nil {
			t.Fatal(err)
		}
	}
	first := kafkaSinkOn(t, addr)
	produce(first, "k=a")
	o, err := first.ends()
	if err != nil {
		t.Fatal(err)
	}
	if o.Topic != "kafka/kp.results" || !slices.Equal(o.Ends, []int64{1}) {
		t.Fatalf("ends %+v", o)
	}
	produce(first, "k=b", "k=c")
	again := kafkaSinkOn(t, addr)
	if err := resumeSink(again, o); err != nil {
		t.Fatal(err)
	}
	produce(again, "k=b", "k=c", "k=d")
	topic, err := bl.Topic("kp.results")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := contents(t, topic)[0], []string{"k=a", "k=b", "k=c", "k=d"}; !slices.Equal(got, want) {
		t.Fatalf("topic %v, want %v", got, want)
	}
}

// TestOutputsWithoutAKafkaCluster: a checkpoint whose Kafka sink's
// cluster does not answer is written without that sink's ends (a restart
// from it produces that sink's results again), rather than not at all;
// and a restart that cannot read the sink goes on without its replay.
func TestOutputsWithoutAKafkaCluster(t *testing.T) {
	defer func(d time.Duration) { kafkaIOTimeout = d }(kafkaIOTimeout)
	kafkaIOTimeout = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	_, topic := testTopic(t, 1)
	s := sinkOn(t, topic)
	write(t, s, "k=a")
	e := &emitter{p: &plan{cfg: &Config{Name: "kp"}}, topics: []*localSink{s}, locals: []*localSink{s},
		kafkas: []*kafkaSink{{cl: cl, brokers: []string{addr}, topic: "kp.results"}}}
	outs, err := e.outputs()
	if err != nil || len(outs) != 1 || outs[0].Topic != "events" {
		t.Fatalf("outputs %+v, %v; want the local topic's alone", outs, err)
	}
	// Resuming from a checkpoint that has the sink's ends, the run goes on
	// without its replay (it produces its results since again), and the
	// local topic's replay is there.
	write(t, s, "k=b")
	outs = append(outs, outputSnap{Topic: "kafka/kp.results", Ends: []int64{0}})
	if err := e.resume([]sourceOutputs{{noPartition, outs}}, map[int32]int64{0: 1}); err != nil {
		t.Fatalf("resume without the Kafka cluster: %v", err)
	}
	if e.kafkas[0].replay != nil || s.unmet() != 1 {
		t.Fatalf("replays: kafka %v, local topic %d records", e.kafkas[0].replay, s.unmet())
	}
}

// TestReplayCarriesWhatItHasNotMet: a checkpoint written while a restart
// replays records the topic's ends and the killed run's records the
// restart has not met yet, and only those: a second restart from it skips
// them, and writes a record the first restart had met (its state is past
// it: the same line coming again, as an alert firing a second time with
// the same value, is a new one). Once the first restart has read the
// source as far as it held at its start, it lets the rest go.
func TestReplayCarriesWhatItHasNotMet(t *testing.T) {
	_, topic := testTopic(t, 1)
	o := killedRun(t, topic, []string{"k=a"}, []string{"k=b", "k=c"})
	s := sinkOn(t, topic)
	e := &emitter{p: &plan{cfg: &Config{Name: "kp"}}, topics: []*localSink{s}, locals: []*localSink{s}}
	if err := e.resume([]sourceOutputs{{noPartition, []outputSnap{o}}}, map[int32]int64{0: 10, 1: 5}); err != nil {
		t.Fatal(err)
	}
	write(t, s, "k=b", "k=x") // b met; x new
	outs, err := e.outputs()
	if err != nil || len(outs) != 1 || !slices.Equal(outs[0].Ends, []int64{4}) || len(outs[0].Unmet) != 1 ||
		string(outs[0].Unmet[0].ID) != string(recordID(nil, noPartition, []byte("k"), []byte("c"))) || outs[0].Unmet[0].N != 1 {
		t.Fatalf("while replaying: outputs %+v (%v), want the topic's end 4 and c unmet", outs, err)
	}
	second := sinkOn(t, topic)
	if err := resumeSink(second, outs[0]); err != nil {
		t.Fatal(err)
	}
	write(t, second, "k=b", "k=c", "k=y")
	if got, want := contents(t, topic)[0], []string{"k=a", "k=b", "k=c", "k=x", "k=b", "k=y"}; !slices.Equal(got, want) {
		t.Fatalf("topic %v, want %v", got, want)
	}

	e.readTo(map[int32]*partReport{0: {next: 10}, 1: {next: 4}})
	if s.replay == nil {
		t.Fatal("retired before partition 1 reached its end at the restart")
	}
	e.readTo(map[int32]*partReport{0: {next: 10}, 1: {next: 5}})
	if s.replay != nil || e.catchUp != nil {
		t.Fatal("not retired once the source was read to its ends at the restart")
	}
	if outs, err := e.outputs(); err != nil || len(outs[0].Unmet) != 0 {
		t.Fatalf("after: outputs %+v (%v), want nothing unmet", outs, err)
	}
}

// TestReplayBySourcePartition: with a Kafka source, each record a sink
// gets tells its source partition, and the next owner of a partition
// skips, of what was written after that partition's checkpoint, only the
// records from that partition: an identical record from another partition
// (which another instance goes on with) is written. A checkpoint splits
// what a replay has not met by source partition.
func TestReplayBySourcePartition(t *testing.T) {
	check := func(t *testing.T, first, again bySourceSink, got func() []string) {
		first.put(t, "0:k=a", "1:j=a")
		o, err := first.ends()
		if err != nil {
			t.Fatal(err)
		}
		first.put(t, "0:k=b", "1:k=b", "1:j=c", "0:k=c") // the killed run's, after the checkpoint
		budget := replayBudget
		rp, err := again.replayAfter(sinceCheckpoints{0: o.forSource(0)}, &budget)
		if err != nil {
			t.Fatal(err)
		}
		again.start(rp)
		if n := again.unmet(); n != 2 {
			t.Fatalf("%d records of partition 0 to skip, want 2 (k=b, k=c)", n)
		}
		// This instance took partition 0 over: it computes k=b and k=c
		// again; partition 1 goes on elsewhere, writing k=b again.
		again.put(t, "0:k=b", "1:k=b")
		c := again.checkpointed(outputSnap{})
		if len(c.Unmet) != 1 || sourceOfID(c.Unmet[0].ID) != 0 ||
			len(c.forSource(0).Unmet) != 1 || len(c.forSource(1).Unmet) != 0 {
			t.Fatalf("unmet %+v, want k=c of partition 0", c.Unmet)
		}
		again.put(t, "0:k=c", "0:k=d")
		want := []string{"k=a", "j=a", "k=b", "k=b", "j=c", "k=c", "k=b", "k=d"}
		if g := got(); !slices.Equal(g, want) {
			t.Fatalf("topic %v, want %v", g, want)
		}
	}
	onBothSinks(t, check)
	// Each record tells its source partition.
	_, topic := testTopic(t, 1)
	localBySource{sinkOn(t, topic)}.put(t, "0:k=a", "1:j=a")
	p, _ := topic.Partition(0)
	rd, _ := p.NewReader(0)
	defer rd.Close()
	recs, _ := rd.Read(nil)
	if len(recs) != 2 || recordSource(recs[0].Headers) != 0 || recordSource(recs[1].Headers) != 1 {
		t.Fatalf("headers %+v", recs)
	}
}

// TestReplayOfSeveralCheckpoints: an instance that takes several source
// partitions, each from its own checkpoint (taken at other ends), reads
// the sink once and skips, of each partition's records, those written
// after that partition's checkpoint.
func TestReplayOfSeveralCheckpoints(t *testing.T) {
	check := func(t *testing.T, first, again bySourceSink, got func() []string) {
		first.put(t, "0:k=a")
		o0, err := first.ends() // partition 0's checkpoint
		if err != nil {
			t.Fatal(err)
		}
		first.put(t, "1:j=b", "0:k=c")
		o1, err := first.ends() // partition 1's
		if err != nil {
			t.Fatal(err)
		}
		first.put(t, "1:j=d", "0:k=e", "1:j=f")
		budget := replayBudget
		rp, err := again.replayAfter(sinceCheckpoints{0: o0.forSource(0), 1: o1.forSource(1)}, &budget)
		if err != nil {
			t.Fatal(err)
		}
		again.start(rp)
		if n := again.unmet(); n != 4 {
			t.Fatalf("%d records to skip, want 4 (k=c, k=e, j=d, j=f)", n)
		}
		// j=b was before partition 1's checkpoint: its state is past it,
		// and a j=b now is a new one.
		again.put(t, "0:k=c", "1:j=b", "1:j=d", "0:k=e", "1:j=f", "0:k=g")
		want := []string{"k=a", "j=b", "k=c", "j=d", "k=e", "j=f", "j=b", "k=g"}
		if g := got(); !slices.Equal(g, want) {
			t.Fatalf("topic %v, want %v", g, want)
		}
	}
	onBothSinks(t, check)
}

// onBothSinks runs check on a local topic and on a Kafka sink: first and
// again write the same topic (a killed run's sink and its successor's),
// got reads it.
func onBothSinks(t *testing.T, check func(t *testing.T, first, again bySourceSink, got func() []string)) {
	t.Run("local topic", func(t *testing.T) {
		_, topic := testTopic(t, 1)
		check(t, localBySource{sinkOn(t, topic)}, localBySource{sinkOn(t, topic)},
			func() []string { return contents(t, topic)[0] })
	})
	t.Run("kafka sink", func(t *testing.T) {
		addr, bl := broker(t)
		check(t, kafkaBySource{kafkaSinkOn(t, addr)}, kafkaBySource{kafkaSinkOn(t, addr)}, func() []string {
			topic, err := bl.Topic("kp.results")
			if err != nil {
				t.Fatal(err)
			}
			return contents(t, topic)[0]
		})
	})
}

// bySourceSink is a sink of TestReplayBySourcePartition, which writes
// "src:key=value" records and flushes them.
type bySourceSink interface {
	resumable
	ends() (outputSnap, error)
	checkpointed(outputSnap) outputSnap
	put(t *testing.T, recs ...string)
}

type localBySource struct{ *localSink }

func (s localBySource) put(t *testing.T, recs ...string) {
	t.Helper()
	for _, r := range recs {
		src, k, v := bySourceRecord(r)
		if err := s.add(k, v, src, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.pr.Flush(); err != nil {
		t.Fatal(err)
	}
}

type kafkaBySource struct{ *kafkaSink }

func (s kafkaBySource) put(t *testing.T, recs ...string) {
	t.Helper()
	for _, r := range recs {
		src, k, v := bySourceRecord(r)
		s.add(k, v, src, 1)
	}
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
}

func bySourceRecord(r string) (src int32, key, value []byte) {
	p, kv, _ := strings.Cut(r, ":")
	k, v, _ := cut(kv)
	return sourceOf([]byte(p)), []byte(k), []byte(v)
}

// TestReplayThroughAnotherDirectory: with a Kafka source, a partition's
// checkpoint written by an instance that restored it from another data
// directory's checkpoint carries that directory's outputs (its local
// topics are not this instance's), until this instance has caught up; so
// that when the partition goes back to that directory from this
// checkpoint, it finds what it wrote after its own, and does not write
// it again.
func TestReplayThroughAnotherDirectory(t *testing.T) {
	_, dTopic := testTopic(t, 1) // instance D's data directory
	_, eTopic := testTopic(t, 1) // instance E's: another topic ID
	put := func(s *localSink, recs ...string) {
		t.Helper()
		for _, r := range recs {
			k, v, _ := cut(r)
			if err := s.add([]byte(k), []byte(v), 0, 1); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.pr.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	emitterOn := func(s *localSink) *emitter {
		return &emitter{p: &plan{cfg: &Config{Name: "kp"}}, topics: []*localSink{s}, locals: []*localSink{s}, bySource: true}
	}
	// D writes a, checkpoints partition 0, writes b and c, and dies.
	d := sinkOn(t, dTopic)
	put(d, "k=a")
	oD, err := d.ends()
	if err != nil {
		t.Fatal(err)
	}
	put(d, "k=b", "k=c")
	// E takes partition 0 from D's checkpoint, computes b again and
	// checkpoints before it has caught up, then dies.
	e := emitterOn(sinkOn(t, eTopic))
	if err := e.resume([]sourceOutputs{{0, []outputSnap{oD}}}, map[int32]int64{0: 10}); err != nil {
		t.Fatal(err)
	}
	if len(e.foreign[0]) != 1 || e.foreign[0][0].ID != dTopic.ID() {
		t.Fatalf("foreign %+v, want D's topic", e.foreign)
	}
	put(e.topics[0], "k=b")
	outs, err := e.outputs()
	if err != nil {
		t.Fatal(err)
	}
	var cp []outputSnap // E's checkpoint of partition 0, as kafkaRun.save writes it
	for _, o := range outs {
		cp = append(cp, o.forSource(0))
	}
	cp = append(cp, e.foreign[0]...)
	// D takes partition 0 back from E's checkpoint: it computes c and d.
	d2 := emitterOn(sinkOn(t, dTopic))
	if err := d2.resume([]sourceOutputs{{0, cp}}, map[int32]int64{0: 10}); err != nil {
		t.Fatal(err)
	}
	if len(d2.foreign[0]) != 1 || d2.foreign[0][0].ID != eTopic.ID() {
		t.Fatalf("D carries %+v, want E's topic", d2.foreign)
	}
	put(d2.topics[0], "k=c", "k=d")
	if got, want := contents(t, dTopic)[0], []string{"k=a", "k=b", "k=c", "k=d"}; !slices.Equal(got, want) {
		t.Fatalf("D's topic %v, want %v", got, want)
	}
	// Caught up, E lets D's outputs go.
	e.readTo(map[int32]*partReport{0: {next: 10}})
	if e.foreign != nil {
		t.Fatalf("still carried once caught up: %+v", e.foreign)
	}
}

// TestKafkaSinkReplayWhereRecordsWereDeleted: a Kafka sink whose records
// after the checkpoint's ends are gone (retention, DeleteRecords) reads
// that partition as nothing to skip, as a local topic does: what is
// there is not all the stopped run wrote after the checkpoint.
func TestKafkaSinkReplayWhereRecordsWereDeleted(t *testing.T) {
	addr, bl := broker(t)
	first := kafkaSinkOn(t, addr)
	for _, v := range []string{"a", "b", "c"} {
		first.add([]byte("k"), []byte(v), noPartition, 1)
		if v == "a" {
			if err := first.flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := first.flush(); err != nil {
		t.Fatal(err)
	}
	o := outputSnap{Topic: first.outputName(), Ends: []int64{1}}
	topic, err := bl.Topic("kp.results")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := topic.Partition(0)
	if _, err := p.DeleteRecords(2); err != nil { // b is gone
		t.Fatal(err)
	}
	again := kafkaSinkOn(t, addr)
	if err := resumeSink(again, o); err != nil {
		t.Fatal(err)
	}
	if n := again.unmet(); n != 0 {
		t.Fatalf("%d records to skip, want none", n)
	}
}
